"""The HTTP API and websocket with FastAPI's TestClient: every endpoint, every limit and
every kind of bad input, answered with a JSON reason. A tiny untrained classifier stands in
for a real model (the server, not the model, is under test); faces come from the bundled
astronaut portrait and the default detector (MTCNN)."""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import asdict

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from ferkit.infer.defaults import DETECTOR  # noqa: E402
from ferkit.infer.demo import sample_image  # noqa: E402
from ferkit.infer.smoothing import SmoothingConfig  # noqa: E402
from ferkit.labels import EMOTIONS  # noqa: E402
from ferkit.serve.app import create_app, is_loopback  # noqa: E402
from ferkit.serve.limits import Limits  # noqa: E402

from conftest import save_tiny_checkpoint, tiny_net  # noqa: E402

PHOTO = sample_image().read_bytes()  # 400×400 JPEG with one face


def client_for(**limits) -> TestClient:
    return TestClient(create_app(tiny_net(), limits=Limits(**limits)))


@pytest.fixture(scope="module")
def client():
    with client_for(max_upload_bytes=300_000, max_pixels=2_000_000, max_batch=3) as c:
        yield c


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def png_header(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG that claims to be width × height (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))  # fmt: skip


def upload(client, data: bytes, name="photo.jpg", kind="image/jpeg", **params):
    return client.post("/api/predict", files={"file": (name, data, kind)}, params=params)


def assert_face(face: dict, width: int, height: int) -> None:
    x, y, w, h = face["box"]
    assert 0 <= x and 0 <= y and w > 20 and h > 20 and x + w <= width and y + h <= height
    assert list(face["probs"]) == list(EMOTIONS)
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["label"] == max(face["probs"], key=face["probs"].get)
    assert face["score"] == pytest.approx(face["probs"][face["label"]])


# ------------------------------------------------------------------ service endpoints
def test_health_and_models(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["streams"] == 0 and health["pending"] == 0
    assert health["model"] == "Sequential given by the caller"
    models = client.get("/api/models").json()
    active = models["active"]
    assert active["class_names"] == list(EMOTIONS) and active["backend"] == "torch"
    assert active["detector"] == DETECTOR  # its name, also when searched turned too
    assert set(active["colors"]) == set(EMOTIONS)
    assert all(c.startswith("#") and len(c) == 7 for c in active["colors"].values())
    assert isinstance(models["shipped"], list) and models["limits"]["max_batch"] == 3


def test_page_static_files_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="video"' in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.head("/").status_code == 200
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/predict/batch", "/api/health", "/api/models"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 200
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


# ------------------------------------------------------------------ predict
def test_predict_finds_the_face(client):
    response = upload(client, PHOTO)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["file"], body["width"], body["height"]) == ("photo.jpg", 400, 400)
    [face] = body["faces"]
    assert_face(face, 400, 400)
    assert face["track_id"] is None  # photos are not tracked


def test_predict_annotate_returns_a_jpeg(client):
    response = upload(client, PHOTO, annotate=1)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg" and response.headers["x-faces"] == "1"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == original.shape
    assert np.abs(image.astype(int) - original).mean() > 1  # boxes and bars were drawn


def test_predict_image_without_a_face(client):
    blank = png(np.full((120, 160), 128, np.uint8))  # grayscale PNG
    body = upload(client, blank, "blank.png", "image/png").json()
    assert (body["width"], body["height"], body["faces"]) == (160, 120, [])


def test_predict_batch(client):
    files = [
        ("files", ("a.jpg", PHOTO, "image/jpeg")),
        ("files", ("b.png", png(np.zeros((50, 60, 3), np.uint8)), "image/png")),
    ]
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert first["file"] == "files[0] a.jpg" and len(first["faces"]) == 1
    assert_face(first["faces"][0], 400, 400)
    assert (second["file"], second["width"], second["faces"]) == ("files[1] b.png", 60, [])


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("data", "name", "kind", "status", "words"),
    [
        (b"hello", "notes.txt", "text/plain", 415, "'text/plain' is not accepted"),
        (PHOTO, "photo.bin", "application/octet-stream", 415, "application/octet-stream"),
        (b"not an image at all", "fake.jpg", "image/jpeg", 422, "fake.jpg: not a readable image"),
        (b"", "empty.jpg", "image/jpeg", 422, "empty.jpg: the file is empty"),
        (PHOTO[:30], "cut.jpg", "image/jpeg", 422, "cut.jpg"),
        (png_header(100_000, 100_000), "bomb.png", "image/png", 413, "decompression bomb"),
        (png_header(2_000, 1_500), "big.png", "image/png", 413, "3.0 megapixels, more than"),
    ],
)
def test_predict_refuses_bad_uploads(client, data, name, kind, status, words):
    response = upload(client, data, name, kind)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_body_over_the_upload_limit_is_413(client):
    too_big = PHOTO * 9  # 350 kB, over the 300 kB limit
    response = upload(client, too_big)
    assert response.status_code == 413
    assert response.json()["detail"] == "request body larger than the limit of 300,000 bytes"

    def chunks():  # no Content-Length: the body is cut off while it streams in
        for _ in range(40):
            yield b"x" * 10_000

    streamed = client.post(
        "/api/predict",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert streamed.status_code == 413 and "300,000 bytes" in streamed.json()["detail"]


def test_malformed_requests_say_what_is_missing(client):
    response = client.post("/api/predict", data={"image": "x"})
    assert response.status_code == 422
    assert "file: Field required" in response.json()["detail"]
    assert "multipart/form-data" in response.json()["detail"]
    response = client.get("/api/predict")
    assert response.status_code == 405 and response.json()["detail"] == "Method Not Allowed"


def test_batch_limits_and_bad_member(client):
    files = [("files", (f"{i}.jpg", PHOTO, "image/jpeg")) for i in range(4)]
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 400 and "Maximum number of files is 3" in response.text
    files = [
        ("files", ("a.jpg", PHOTO, "image/jpeg")),
        ("files", ("b.gif", b"GIF89a", "image/gif")),
    ]
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 415 and response.json()["detail"].startswith("files[1] b.gif")


def test_busy_server_answers_503():
    with client_for(max_pending=2) as c:
        engine = c.app.state.engine
        engine.pending = 2  # two requests already waiting for the model
        response = upload(c, PHOTO)
        assert response.status_code == 503 and "retry" in response.json()["detail"]
        engine.pending = 0
        assert upload(c, PHOTO).status_code == 200


def test_cors_is_off_by_default_and_can_be_allowed():
    origin = {"Origin": "http://elsewhere.example"}
    with client_for() as c:
        assert "access-control-allow-origin" not in c.get("/api/health", headers=origin).headers
    app = create_app(tiny_net(), cors_origins=["http://elsewhere.example"])
    with TestClient(app) as c:
        allowed = c.get("/api/health", headers=origin).headers
        assert allowed["access-control-allow-origin"] == "http://elsewhere.example"


# ------------------------------------------------------------------ websocket stream
def send_paced(ws, frame: bytes, max_fps: float = Limits().max_fps) -> None:
    """Send a frame no sooner than the rate cap allows (with a margin), so it is processed,
    not answered "dropped": the cap's token bucket refills with the time between arrivals,
    and a test that sends as fast as it can gets drops at any machine speed."""
    time.sleep(1.25 / max_fps)
    ws.send_bytes(frame)


def receive_until(ws, kind: str) -> dict:
    while (message := ws.receive_json())["type"] != kind:
        pass
    return message


def test_stream_tracks_and_smooths_per_connection(client):
    with client.websocket_connect("/api/stream") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["limits"]["max_fps"] == 15.0
        assert hello["smoothing"] == asdict(SmoothingConfig())  # the Recognizer's default
        results = []
        for seq in range(1, 5):
            send_paced(ws, PHOTO)
            message = ws.receive_json()
            assert message["seq"] == seq  # every frame gets exactly one answer, in order
            assert message["type"] == "result", message
            results.append(message)
        # The face is confirmed after two detections and keeps its id.
        ids = [[f["track_id"] for f in r["faces"]] for r in results]
        assert ids[-1] == [1] and all(i in ([], [1]) for i in ids)
        assert_face(results[-1]["faces"][0], 400, 400)
        assert results[-1]["width"] == 400 and results[-1]["latency_ms"] > 0

        ws.send_text(json.dumps({"smoothing": "ema", "alpha": 0.6, "window": 3}))
        assert receive_until(ws, "config")["smoothing"] == {
            "method": "ema",
            "window": 3,
            "alpha": 0.6,
        }
    # A new connection starts with its own tracker: ids begin at 1 again.
    with client.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        ids = []
        for _ in range(3):
            send_paced(ws, PHOTO)
            message = receive_until(ws, "result")
            ids += [f["track_id"] for f in message["faces"]]
        assert ids and set(ids) == {1}


def test_stream_reports_bad_frames_and_config_and_goes_on():
    with client_for(max_frame_bytes=50_000) as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        ws.send_bytes(b"garbage")
        error = ws.receive_json()
        assert (error["type"], error["seq"], error["status"]) == ("error", 1, 422)
        assert "frame 1" in error["detail"]
        ws.send_bytes(PHOTO * 2)  # 78 kB > 50 kB
        error = ws.receive_json()
        assert (error["seq"], error["status"]) == (2, 413) and "50000-byte limit" in error["detail"]
        for bad, words in [
            ('{"smoothing": "median"}', "median"),
            ('{"speed": 3}', "unknown keys ['speed']"),
            ('{"alpha": 2}', "alpha"),
            ("[1, 2]", "JSON object"),
            ("{oops", "bad config"),
        ]:
            ws.send_text(bad)
            message = ws.receive_json()
            assert message["type"] == "error" and words in message["detail"], message
        ws.send_bytes(PHOTO)
        assert ws.receive_json()["type"] == "result"


def test_stream_rate_cap_drops_frames_at_once():
    with client_for(max_fps=0.5) as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        for _ in range(5):
            ws.send_bytes(PHOTO)
        answers = [ws.receive_json() for _ in range(5)]
        by_seq = {a["seq"]: a for a in answers}
        assert sorted(by_seq) == [1, 2, 3, 4, 5]
        dropped = [a for a in answers if a["type"] == "dropped"]
        assert len(dropped) == 3 and all(a["reason"] == "rate" for a in dropped)  # burst of 2
        assert "0.5 frames/s" in dropped[0]["detail"]


def test_stream_queue_drops_stale_frames_not_the_newest():
    with client_for(queue_size=1, max_fps=1e6) as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        with c.app.state.engine._lock:  # the model is busy: frames pile up meanwhile
            for _ in range(8):
                ws.send_bytes(PHOTO)
            # one frame waits for the model, one in the queue: the other six are dropped at
            # once, whatever the machine's speed (the model stays busy until they are)
            answers = [ws.receive_json() for _ in range(6)]
        answers += [ws.receive_json() for _ in range(2)]
    assert sorted(a["seq"] for a in answers) == list(range(1, 9))  # one answer per frame
    drops = [a for a in answers if a["type"] == "dropped"]
    results = [a for a in answers if a["type"] == "result"]
    assert len(drops) >= 6 and {d["reason"] for d in drops} == {"queue"}
    assert results[-1]["seq"] == 8 and results[-1]["dropped"] == len(drops)  # the newest won


def test_stream_connection_limit():
    with client_for(max_streams=1) as c, c.websocket_connect("/api/stream") as first:
        first.receive_json()
        assert c.get("/api/health").json()["streams"] == 1
        with (
            c.websocket_connect("/api/stream") as second,
            pytest.raises(WebSocketDisconnect) as info,
        ):
            second.receive_json()
        assert info.value.code == 1013 and "limit 1" in info.value.reason


# ------------------------------------------------------------------ model choice and CLI
def test_model_by_path_and_fallback(tmp_path, monkeypatch):
    path = save_tiny_checkpoint(tmp_path / "m.pt")
    with TestClient(create_app(str(path))) as c:
        assert c.get("/api/health").json()["model"] == f"{path} (chosen explicitly)"
        assert upload(c, PHOTO).status_code == 200
    monkeypatch.chdir(tmp_path)  # no runs/ here, and no shipped weights yet
    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    monkeypatch.setattr("ferkit.models.checkpoint.shipped_models", lambda: [])
    monkeypatch.setattr("ferkit.models.checkpoint.shipped_aliases", lambda: {})
    with TestClient(create_app()) as c:
        health = c.get("/api/health").json()
        assert health["trained"] is False and "UNTRAINED" in health["model"]


def test_shipped_default_is_served_by_its_matching_onnx_export(monkeypatch):
    from ferkit.infer.loading import choose_model

    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    assert choose_model().spec == "default"  # what `make demo` hands to the Recognizer too
    with TestClient(create_app()) as c:
        active = c.get("/api/models").json()["active"]
    assert "shipped 'default'" in active["description"] and active["backend"] == "onnx"


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.org")


def test_cli_serve_defaults_to_loopback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import ferkit.serve.app as serve_app
    from ferkit.cli import app

    path = save_tiny_checkpoint(tmp_path / "m.pt")
    calls, threads = [], []
    monkeypatch.setattr(serve_app, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr("ferkit.infer.recognizer.set_threads", threads.append)
    result = CliRunner().invoke(app, ["serve", "--model", str(path)])
    assert result.exit_code == 0, result.output
    [(served, options)] = calls
    assert options == {"host": "127.0.0.1", "port": 8000, "log_level": "info"}
    assert threads[0] == 1  # one torch/OpenCV thread, as predict and demo use
    assert served.state.engine.choice.description.startswith(str(path))
    assert "http://127.0.0.1:8000/" in result.output
    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "missing.pt")])
    assert result.exit_code == 1 and "missing.pt" in str(result.exception or result.output)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="every limit must be > 0"):
        Limits(max_fps=0)
    assert Limits().to_dict()["max_batch"] == 16
