// ferkit web page: webcam frames → WS /api/stream → boxes, labels and probability bars drawn
// over the video, FPS, smoothing control and an emotion timeline; photos → POST /api/predict.
// One frame is in flight at a time, so a slow server lowers the frame rate instead of
// building a backlog; the server also caps the rate and drops stale frames itself.
"use strict";

const MAX_SIDE = 640; // frames are downscaled to this before sending
const JPEG_QUALITY = 0.8;
const ANSWER_TIMEOUT_MS = 3000; // resend if an answer never comes
const TIMELINE_S = 30;

const $ = (id) => document.getElementById(id);
const state = {
  names: [], colors: {}, limits: null, ws: null, stream: null, timer: null,
  inFlight: false, sentAt: 0, sent: 0, answers: [], timeline: [],
};

function div(className) {
  const el = document.createElement("div");
  el.className = className;
  return el;
}

function pct(v) { return `${(100 * v).toFixed(3)}%`; }

function setStatus(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ model and legend
async function loadModel() {
  try {
    const response = await fetch("/api/models");
    const { active } = await response.json();
    state.names = active.class_names;
    state.colors = active.colors;
    const el = $("model");
    el.textContent = `model: ${active.description}`;
    el.classList.toggle("untrained", !active.trained);
    $("legend").replaceChildren(...state.names.map((name) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = state.colors[name];
      item.append(swatch, name);
      return item;
    }));
    $("smoothing").value = active.smoothing.method;
    showStrength(active.smoothing);
  } catch (error) {
    setStatus("status", `cannot reach the server: ${error}`, true);
  }
}

// ------------------------------------------------------------------ drawing faces
function renderFaces(overlay, faces, width, height) {
  overlay.replaceChildren(...faces.map((face) => faceElement(face, width, height)));
}

function faceElement(face, width, height) {
  const [x, y, w, h] = face.box;
  const color = state.colors[face.label] || "#00ff00";
  const box = div("face");
  box.dataset.label = face.label;
  if (y < 0.08 * height) box.classList.add("low");
  if (x + w > 0.62 * width) box.classList.add("right");
  Object.assign(box.style, {
    left: pct(x / width), top: pct(y / height), width: pct(w / width), height: pct(h / height),
    borderColor: color,
  });
  const label = div("face-label");
  const tag = face.track_id === null || face.track_id === undefined ? "" : `#${face.track_id} `;
  label.textContent = `${tag}${face.label} ${face.score.toFixed(2)}`;
  label.style.background = color;
  const bars = div("bars");
  for (const name of state.names.length ? state.names : Object.keys(face.probs)) {
    const p = face.probs[name] || 0;
    const row = div("bar");
    const title = document.createElement("span");
    title.className = "name";
    title.textContent = name;
    const track = div("track");
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = pct(p);
    fill.style.background = state.colors[name] || "#0f0";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = `${Math.round(100 * p)}%`;
    row.append(title, track, value);
    bars.append(row);
  }
  box.append(label, bars);
  return box;
}

// ------------------------------------------------------------------ webcam stream
async function start() {
  $("start").disabled = true;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (error) {
    setStatus("status", `camera unavailable: ${error.name}: ${error.message}`, true);
    $("start").disabled = false;
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  $("placeholder").hidden = true;
  $("stop").disabled = false;
  openSocket();
}

function openSocket() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/stream`);
  state.ws = ws;
  state.sent = 0;
  state.inFlight = false;
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onopen = () => {
    setStatus("status", "streaming");
    sendConfig();
    state.timer = setInterval(pump, 10);
  };
  ws.onclose = (event) => {
    clearInterval(state.timer);
    if (state.ws === ws && state.stream) {
      const reason = event.reason ? `: ${event.reason}` : "";
      setStatus("status", `stream closed (code ${event.code}${reason})`, event.code !== 1000);
      stop(false);
    }
  };
}

function pump() {
  const { ws } = state;
  const video = $("video");
  const now = performance.now();
  if (!ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2) return;
  if (state.inFlight && now - state.sentAt < ANSWER_TIMEOUT_MS) return;
  const minGap = state.limits ? 1000 / state.limits.max_fps : 0;
  if (now - state.sentAt < minGap) return;
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  const canvas = pump.canvas || (pump.canvas = document.createElement("canvas"));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  state.inFlight = true;
  state.sentAt = now;
  canvas.toBlob((blob) => {
    if (blob && ws.readyState === WebSocket.OPEN) {
      ws.send(blob);
      state.sent += 1;
    } else {
      state.inFlight = false;
    }
  }, "image/jpeg", JPEG_QUALITY);
}

function handle(message) {
  switch (message.type) {
    case "hello":
      state.limits = message.limits;
      break;
    case "result":
      if (message.seq === state.sent) state.inFlight = false;
      showResult(message);
      break;
    case "dropped":
      if (message.seq === state.sent) state.inFlight = false;
      $("dropped").textContent = String(Number($("dropped").textContent) + 1);
      break;
    case "error":
      if (message.seq === state.sent) state.inFlight = false;
      setStatus("status", message.detail, true);
      break;
    case "config":
      setStatus("status", `smoothing: ${describeSmoothing(message.smoothing)}`);
      break;
    default:
      break;
  }
}

function showResult(message) {
  const now = performance.now();
  renderFaces($("overlay"), message.faces, message.width, message.height);
  state.answers.push(now);
  while (state.answers.length && now - state.answers[0] > 2000) state.answers.shift();
  const span = (now - state.answers[0]) / 1000;
  $("fps").textContent = state.answers.length > 1 ? ((state.answers.length - 1) / span).toFixed(1) : "–";
  $("latency").textContent = `${Math.round(now - state.sentAt)} ms`;
  $("latency").title = `server: ${message.latency_ms} ms`;
  $("count").textContent = String(message.faces.length);
  $("dropped").textContent = String(message.dropped);
  const tracked = [...message.faces].sort((a, b) => (a.track_id ?? 1e9) - (b.track_id ?? 1e9))[0];
  state.timeline.push({ t: now / 1000, probs: tracked ? tracked.probs : null });
  while (state.timeline.length && now / 1000 - state.timeline[0].t > TIMELINE_S) state.timeline.shift();
  drawTimeline(now / 1000);
}

function stop(closeSocket = true) {
  clearInterval(state.timer);
  if (closeSocket && state.ws) state.ws.close(1000);
  state.ws = null;
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  $("video").srcObject = null;
  $("overlay").replaceChildren();
  $("placeholder").hidden = false;
  $("start").disabled = false;
  $("stop").disabled = true;
  if (closeSocket) setStatus("status", "stopped");
}

// ------------------------------------------------------------------ smoothing control
function describeSmoothing(s) {
  if (s.method === "ema") return `EMA, α = ${s.alpha}`;
  if (s.method === "mean") return `mean of ${s.window} frames`;
  return "none";
}

function showStrength(smoothing) {
  const slider = $("strength");
  const label = $("strength-label");
  label.hidden = smoothing.method === "none";
  if (smoothing.method === "mean") {
    Object.assign(slider, { min: 1, max: 30, step: 1 });
    slider.value = smoothing.window;
    label.firstChild.textContent = "window ";
  } else {
    Object.assign(slider, { min: 0.05, max: 1, step: 0.05 });
    slider.value = smoothing.alpha;
    label.firstChild.textContent = "α ";
  }
  $("strength-value").textContent = $("smoothing").value === "mean"
    ? String(slider.value) : Number(slider.value).toFixed(2);
}

function sendConfig() {
  const method = $("smoothing").value;
  const value = Number($("strength").value);
  const config = { smoothing: method };
  if (method === "ema") config.alpha = value;
  if (method === "mean") config.window = Math.round(value);
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(config));
}

// ------------------------------------------------------------------ timeline
function drawTimeline(nowS) {
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#2c3038";
  ctx.lineWidth = 1;
  for (const level of [0.25, 0.5, 0.75]) {
    ctx.beginPath();
    ctx.moveTo(0, height * (1 - level));
    ctx.lineTo(width, height * (1 - level));
    ctx.stroke();
  }
  const x = (t) => width * (1 - (nowS - t) / TIMELINE_S);
  ctx.lineWidth = 2;
  for (const name of state.names) {
    ctx.strokeStyle = state.colors[name];
    ctx.beginPath();
    let drawing = false;
    for (const point of state.timeline) {
      if (!point.probs) { drawing = false; continue; }
      const y = height * (1 - point.probs[name]);
      if (drawing) ctx.lineTo(x(point.t), y); else ctx.moveTo(x(point.t), y);
      drawing = true;
    }
    ctx.stroke();
  }
}

// ------------------------------------------------------------------ photo upload
async function upload(file) {
  const stage = $("photo-stage");
  const overlay = $("photo-overlay");
  overlay.replaceChildren();
  $("photo").src = URL.createObjectURL(file);
  stage.hidden = false;
  setStatus("photo-status", `recognising ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      setStatus("photo-status", `${response.status}: ${body.detail}`, true);
      return;
    }
    renderFaces(overlay, body.faces, body.width, body.height);
    const labels = body.faces.map((f) => `${f.label} ${f.score.toFixed(2)}`).join(", ");
    setStatus("photo-status", `${body.faces.length} face(s)${labels ? ": " + labels : ""}`);
  } catch (error) {
    setStatus("photo-status", `upload failed: ${error}`, true);
  }
}

// ------------------------------------------------------------------ wiring
$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => stop(true));
$("smoothing").addEventListener("change", () => {
  const method = $("smoothing").value;
  showStrength({ method, alpha: 0.4, window: 5 });
  sendConfig();
});
$("strength").addEventListener("input", () => {
  const slider = $("strength");
  $("strength-value").textContent = $("smoothing").value === "mean"
    ? String(slider.value) : Number(slider.value).toFixed(2);
});
$("strength").addEventListener("change", sendConfig);
$("file").addEventListener("change", (event) => {
  if (event.target.files.length) upload(event.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
});
loadModel();
