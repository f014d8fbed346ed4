"""`WS /api/stream`: live recognition of a client's camera over one websocket.

Protocol (every server message is JSON with a "type"):

    server → {"type": "hello", "model": {...}, "limits": {...}, "smoothing": {...}}
    client → binary message: one encoded frame (JPEG, PNG or WebP)
    server → {"type": "result", "seq", "index", "time_s", "width", "height", "faces",
              "latency_ms", "dropped"}               one per processed frame
           | {"type": "dropped", "seq", "reason": "rate" | "queue", "detail"}
           | {"type": "error", "seq", "status", "detail"}   (bad frame; the stream goes on)
    client → text message: {"smoothing": "ema" | "mean" | "none", "alpha"?, "window"?}
    server → {"type": "config", "smoothing": {...}}     (or an "error")

A stream that sends nothing while no answer is due for `Limits.stream_idle_timeout` is
closed (1008), and at the `Limits.max_streams` cap a new stream closes the one silent
longest if it has been silent for `Limits.stream_evict_after`: a few idle websockets cannot
lock every camera out. `seq` numbers the client's binary messages from 1, so every frame
gets exactly one answer and a client can keep one frame in flight. Each connection has its
own tracker (stable face ids) and smoother, so two viewers never mix faces. A frame rate
above `Limits.max_fps` (token bucket, bursts of two) is answered "dropped" at once, and at
most `Limits.queue_size` frames wait: when a new one arrives the oldest waiting frame is
dropped, so answers describe the present instead of falling further and further behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from contextlib import suppress

from starlette.websockets import WebSocket, WebSocketDisconnect

from ferkit.errors import FerkitError
from ferkit.infer.smoothing import SmoothingConfig, TrackSmoother
from ferkit.infer.tracking import IoUTracker, TrackingConfig
from ferkit.serve.engine import Engine
from ferkit.serve.limits import Rejected

log = logging.getLogger(__name__)

BUSY = 1013  # websocket close code "try again later"
POLICY = 1008  # websocket close code "policy violation": idle too long
_BURST = 2.0  # frames a client may send back to back before the rate cap applies
_SMOOTHING_KEYS = {"smoothing", "alpha", "window"}
_OPEN: dict[int, set[StreamSession]] = {}  # id(engine) → its streams not yet closed


async def serve_stream(websocket: WebSocket, engine: Engine) -> None:
    """Run one connection to its end; past `max_streams`, close the stream silent longest
    or, when none has been silent long enough, refuse this one (1013)."""
    await websocket.accept()
    streams = _OPEN.setdefault(id(engine), set())
    limits = engine.limits
    if len(streams) >= limits.max_streams:
        idle = max(streams, key=lambda session: session.idle_for())
        if idle.idle_for() < limits.stream_evict_after:
            reason = f"server busy: {len(streams)} streams open (limit {limits.max_streams})"
            await websocket.close(code=BUSY, reason=reason)
            return
        streams.discard(idle)
        await idle.close(f"closed to make room: no frame for {idle.idle_for():.0f} s")
    session = StreamSession(websocket, engine)
    streams.add(session)
    engine.streams = len(streams)
    try:
        await session.run()
    finally:
        streams.discard(session)
        engine.streams = len(streams)
        if not streams:
            _OPEN.pop(id(engine), None)


class StreamSession:
    """The state of one connection: tracker, smoother, frame queue and counters."""

    def __init__(self, websocket: WebSocket, engine: Engine) -> None:
        recognizer = engine.recognizer
        self.ws, self.engine, self.limits = websocket, engine, engine.limits
        self.tracker = IoUTracker(recognizer.tracking or TrackingConfig())
        self.smoother = TrackSmoother(recognizer.smoothing)
        self.queue: deque[tuple[int, float, bytes]] = deque()
        self.wakeup = asyncio.Event()
        self.seq = self.processed = self.dropped = 0
        self.start = self.last_arrival = self.last_active = time.monotonic()
        self.closed = self.busy = False
        self.tokens = _BURST
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work())
        try:
            await self._send(
                type="hello", model=self.engine.describe(), limits=self.limits.to_dict(),
                smoothing=vars(self.smoother.config),
            )  # fmt: skip
            while not self.closed:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), self._idle_left())
                except TimeoutError:
                    if self._idle_left() <= 0:
                        timeout = self.limits.stream_idle_timeout
                        await self.close(f"no frame for {timeout:g} s")
                    continue
                self.last_active = time.monotonic()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await self._offer(message["bytes"])
                elif message.get("text") is not None:
                    await self._configure(message["text"])
        except WebSocketDisconnect:
            return
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError):
                await worker

    def idle_for(self) -> float:
        """Seconds since the client last sent something or was answered; 0 while one of
        its frames waits or is being processed (a slow server does not make it idle)."""
        if self.closed:
            return float("inf")
        if self.queue or self.busy:
            return 0.0
        return time.monotonic() - self.last_active

    def _idle_left(self) -> float:
        return self.limits.stream_idle_timeout - self.idle_for()

    async def close(self, reason: str) -> None:
        """Close the connection with a policy-violation code; run() then ends."""
        if not self.closed:
            self.closed = True
            with suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.close(code=POLICY, reason=reason[:120])

    async def _offer(self, data: bytes) -> None:
        """Admit a frame to the queue, or answer at once why it was dropped."""
        self.seq += 1
        now = time.monotonic()
        if len(data) > self.limits.max_frame_bytes:
            await self._send(
                type="error", seq=self.seq, status=413,
                detail=f"frame {self.seq} is {len(data)} bytes, more than the "
                f"{self.limits.max_frame_bytes}-byte limit",
            )  # fmt: skip
            return
        elapsed, self.last_arrival = now - self.last_arrival, now
        self.tokens = min(_BURST, self.tokens + elapsed * self.limits.max_fps)
        if self.tokens < 1.0:
            await self._drop(self.seq, "rate", f"more than {self.limits.max_fps:g} frames/s")
            return
        self.tokens -= 1.0
        if len(self.queue) >= self.limits.queue_size:
            old_seq, _, _ = self.queue.popleft()
            await self._drop(old_seq, "queue", "a newer frame arrived before it was processed")
        self.queue.append((self.seq, now - self.start, data))
        self.wakeup.set()

    async def _work(self) -> None:
        """Process waiting frames one at a time, newest-first survivors in arrival order."""
        while True:
            while not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            seq, time_s, data = self.queue.popleft()
            began = time.perf_counter()
            self.busy = True
            try:
                (height, width), result = await self.engine.track(
                    data, f"frame {seq}", self.processed, time_s, self.tracker, self.smoother
                )
            except Rejected as error:
                await self._send(type="error", seq=seq, status=error.status, detail=error.message)
                continue
            except Exception as error:  # keep the stream alive; the log has the traceback
                log.exception("frame %d of a stream failed", seq)
                detail = f"frame {seq}: internal error ({type(error).__name__})"
                await self._send(type="error", seq=seq, status=500, detail=detail)
                continue
            finally:
                self.busy, self.last_active = False, time.monotonic()
            self.processed += 1
            await self._send(
                type="result", seq=seq, index=result.index, time_s=round(time_s, 4),
                width=width, height=height, faces=[f.to_dict() for f in result.faces],
                latency_ms=round(1000 * (time.perf_counter() - began), 2), dropped=self.dropped,
            )  # fmt: skip

    async def _configure(self, text: str) -> None:
        """Apply a smoothing change; the tracks' smoothing history restarts."""
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            unknown = set(request) - _SMOOTHING_KEYS
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}; use {sorted(_SMOOTHING_KEYS)}")
            current = vars(self.smoother.config)
            config = SmoothingConfig(
                method=request.get("smoothing", current["method"]),
                window=int(request.get("window", current["window"])),
                alpha=float(request.get("alpha", current["alpha"])),
            )
        except (ValueError, TypeError, OverflowError, FerkitError) as error:
            await self._send(type="error", seq=None, status=422, detail=f"bad config: {error}")
            return
        self.smoother = TrackSmoother(config)
        await self._send(type="config", smoothing=vars(config))

    async def _drop(self, seq: int, reason: str, detail: str) -> None:
        self.dropped += 1
        await self._send(type="dropped", seq=seq, reason=reason, detail=detail)

    async def _send(self, **message) -> None:
        """Send one JSON message; the receive loop and the worker both send, one at a time."""
        async with self._send_lock:
            with suppress(WebSocketDisconnect, RuntimeError):  # the client has gone
                await self.ws.send_json(message)
