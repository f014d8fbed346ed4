"""The server under hostile load: per-request pixel limits and the shared memory budget,
Origin and Host checks, request timeouts and the connection cap, hostile stream configs.
Memory is checked with tracemalloc bounds; timeouts are set short and waited for with wide
margins, so nothing here depends on the machine's speed."""

from __future__ import annotations

import json
import socket
import threading
import tracemalloc

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import WebSocketDenialResponse  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from ferkit.errors import FerkitError  # noqa: E402
from ferkit.serve.app import create_app  # noqa: E402
from ferkit.serve.guard import OriginGuard  # noqa: E402
from ferkit.serve.limits import Limits, MemoryBudget, image_cost  # noqa: E402
from test_serve_api import PHOTO, client_for, png_header, upload  # noqa: E402

from conftest import tiny_net  # noqa: E402


def blank_png(width: int, height: int) -> bytes:
    """A real PNG of width × height black pixels: a few kB that decode to megabytes."""
    return cv2.imencode(".png", np.zeros((height, width), np.uint8))[1].tobytes()


# ------------------------------------------------------------------ pixel and memory budgets
def test_batch_over_the_request_pixel_limit_is_refused_before_decoding():
    with client_for(max_pixels=2_000_000, max_request_pixels=3_000_000) as c:
        files = [("files", (f"{i}.png", png_header(1500, 1000), "image/png")) for i in range(3)]
        response = c.post("/api/predict/batch", files=files)
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == (
        "3 images of 4.5 megapixels in all, more than the 3.0 megapixel limit per request"
    )


def test_concurrent_requests_decode_within_the_memory_budget():
    """Four requests of three 4-megapixel PNGs (48 MB decoded each) at once: with a budget
    of one request, decoded images never add up to two requests' worth."""
    image = blank_png(2000, 2000)
    one_request = 3 * image_cost(2000, 2000, len(image))
    limits = Limits(max_upload_bytes=300_000, max_pixels=4_000_000, max_request_pixels=12_000_000,
                    decode_budget_bytes=image_cost(1, 12_000_000, 300_000))  # fmt: skip
    files = [("files", (f"{i}.png", image, "image/png")) for i in range(3)]
    with TestClient(create_app(tiny_net(), limits=limits)) as c:
        c.post("/api/predict/batch", files=files[:1])  # warm up outside the measurement
        statuses = []
        tracemalloc.start()
        try:
            threads = [
                threading.Thread(
                    target=lambda: statuses.append(
                        c.post("/api/predict/batch", files=files).status_code
                    )
                )
                for _ in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert statuses == [200] * 4
    assert 3 * 2000 * 2000 * 3 < peak < 2 * one_request  # one request's images, never two


def test_memory_budget_makes_requests_wait_their_turn():
    budget = MemoryBudget(100)
    entered = threading.Event()

    def second():
        with budget.reserve(60):
            entered.set()

    with budget.reserve(60):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.2)  # waiting while the first holds the budget
    thread.join(timeout=30)
    assert entered.is_set() and budget.used == 0


def test_limits_must_leave_room_for_one_whole_request():
    with pytest.raises(ValueError, match="cannot hold one request"):
        Limits(decode_budget_bytes=1_000_000)


def test_stream_frame_over_the_pixel_limit_is_an_error_not_a_crash():
    with client_for(max_pixels=1_000_000) as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        ws.send_bytes(png_header(60_000, 60_000))
        error = ws.receive_json()
        assert (error["type"], error["status"]) == ("error", 413) and "frame 1" in error["detail"]
        ws.send_bytes(PHOTO)
        assert ws.receive_json()["type"] == "result"


# ------------------------------------------------------------------ origins and hosts
def test_other_sites_pages_may_not_post_or_stream():
    evil = {"Origin": "http://evil.example"}
    with client_for() as c:
        response = c.post("/api/predict", files={"file": ("a.jpg", PHOTO, "image/jpeg")},
                          headers=evil)  # fmt: skip
        assert response.status_code == 403
        assert "--cors http://evil.example" in response.json()["detail"]
        assert c.get("/api/health", headers=evil).status_code == 200  # reading is harmless
        same = {"Origin": "http://testserver"}
        assert upload(c, PHOTO).status_code == 200  # no Origin: not a browser page
        response = c.post("/api/predict", files={"file": ("a.jpg", PHOTO, "image/jpeg")},
                          headers=same)  # fmt: skip
        assert response.status_code == 200
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect("/api/stream", headers=evil):
                pass
        assert denied.value.status_code == 403
        assert "evil.example" in json.loads(denied.value.content)["detail"]
    app = create_app(tiny_net(), cors_origins=["http://evil.example"])
    with TestClient(app) as c, c.websocket_connect("/api/stream", headers=evil) as ws:
        assert ws.receive_json()["type"] == "hello"


@pytest.mark.parametrize(
    ("host", "refused"),
    [("127.0.0.1:8000", False), ("localhost:8000", False), ("[::1]:8000", False),
     ("evil.example:8000", True), ("", True)],
)  # fmt: skip
def test_loopback_server_refuses_foreign_host_names(host, refused):
    """DNS rebinding: evil.example resolving to 127.0.0.1 looks same-origin to the browser."""
    scope = {"type": "http", "method": "GET", "server": ("127.0.0.1", 8000),
             "headers": [(b"host", host.encode())]}  # fmt: skip
    problem = OriginGuard(None).problem(scope)
    assert (problem is not None) == refused
    if refused:
        assert "rebinding" in problem


# ------------------------------------------------------------------ a real server's sockets
@pytest.fixture
def serve_live():
    """Start `ferkit serve`'s uvicorn setup with given limits on a free loopback port."""
    uvicorn = pytest.importorskip("uvicorn")
    from ferkit.serve.protocol import guarded_protocol

    servers = []

    def start(**limits) -> tuple[str, int]:
        limits = Limits(**limits)
        app = create_app(tiny_net(), limits=limits)
        config = uvicorn.Config(app, http=guarded_protocol(limits), log_level="warning")
        server = uvicorn.Server(config)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        for _ in range(600):
            if server.started:
                break
            threading.Event().wait(0.05)
        return sock.getsockname()

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def answer(connection: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the next response on `connection`."""
    connection.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                      if line.startswith(b"content-length")))  # fmt: skip
    while len(body) < length:
        body += connection.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_stalled_headers_and_bodies_time_out_with_408(serve_live):
    live_server = serve_live(header_timeout=0.5, body_timeout=1.0)
    with socket.create_connection(live_server) as slow_headers:
        slow_headers.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
        status, body = answer(slow_headers)
    assert status == 408 and body["detail"] == "request headers not received within 0.5 s"
    with socket.create_connection(live_server) as slow_body:
        slow_body.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: multipart/form-data; boundary=x\r\n"
                          b"Content-Length: 1000\r\n\r\n--x\r\n")  # fmt: skip
        status, body = answer(slow_body)
    assert status == 408 and body["detail"] == "request body not received within 1 s"


def test_connection_cap_closes_idle_connections_for_new_ones(serve_live):
    live_server = serve_live(max_connections=4)
    idle = [socket.create_connection(live_server) for _ in range(4)]
    try:
        idle[0].sendall(b"GET /api/health HTTP/1.1\r\n")  # the oldest, stalled mid-headers
        threading.Event().wait(1.5)  # waiting for headers for over a second: fair to close
        with socket.create_connection(live_server) as fresh:
            fresh.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, body = answer(fresh)
        assert status == 200 and body["status"] == "ok"
        status, body = answer(idle[0])
        assert status == 503 and "make room" in body["detail"]
    finally:
        for connection in idle:
            connection.close()


# ------------------------------------------------------------------ hostile stream configs
@pytest.mark.parametrize(
    ("text", "words"),
    [('{"window": 1e400}', "bad config"), ('{"window": 1e30}', "1..1000"),
     ('{"window": 1000000000000000000000000000000}', "1..1000"), ('{"alpha": NaN}', "alpha")],
)  # fmt: skip
def test_hostile_stream_configs_are_refused_and_the_stream_goes_on(text, words):
    with client_for() as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        ws.send_text(text)
        message = ws.receive_json()
        assert message["type"] == "error" and words in message["detail"], message
        ws.send_bytes(PHOTO)
        assert ws.receive_json()["type"] == "result"


def test_stalled_connections_go_before_the_cap_is_reached(serve_live):
    """Past three quarters of the cap, a new connection closes the oldest stalled one even
    though there is still room, so slowloris never holds the last quarter."""
    live_server = serve_live(max_connections=8)
    stalled = [socket.create_connection(live_server) for _ in range(7)]  # 7 > 0.75 × 8
    try:
        for connection in stalled:
            connection.sendall(b"GET /api/health HTTP/1.1\r\n")
        threading.Event().wait(1.5)  # stalled mid-headers for over a second
        with socket.create_connection(live_server) as fresh:
            fresh.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert answer(fresh)[0] == 200
        status, body = answer(stalled[0])
        assert status == 503 and "make room" in body["detail"]
    finally:
        for connection in stalled:
            connection.close()


def test_a_body_refused_early_gets_one_answer_then_the_connection_closes(serve_live):
    """A streamed body over the limit is answered 413 at once; if the client then sends
    nothing more, the body timeout closes the connection without a second (408) answer."""
    live_server = serve_live(max_upload_bytes=1000, header_timeout=0.5, body_timeout=0.5)
    with socket.create_connection(live_server) as client:
        client.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: multipart/form-data; boundary=x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n"
                       b"7d0\r\n" + b"x" * 2000 + b"\r\n")  # fmt: skip
        client.settimeout(30)
        received = b""
        while chunk := client.recv(65536):  # until the server closes
            received += chunk
    assert received.startswith(b"HTTP/1.1 413") and b"request body larger" in received
    assert received.count(b"HTTP/1.1 ") == 1, received


# ------------------------------------------------------------------ the open-file limit
def test_listener_sheds_connections_at_its_ceiling_instead_of_accepting_them():
    from ferkit.serve.listener import listen_on

    listener = listen_on("127.0.0.1", 0, ceiling=2)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    try:
        accepted = [listener.accept()[0] for _ in range(2)]
        with pytest.raises(BlockingIOError):  # the third is shed, and none is left waiting
            listener.accept()
        assert listener.shed == 1
        status, body = answer(clients[2])
        assert status == 503 and "2 connections open" in body["detail"]
        accepted[0].close()  # a descriptor freed: room for one more
        clients.append(socket.create_connection(listener.getsockname()))
        clients[-1].settimeout(30)
        listener.setblocking(True)
        accepted.append(listener.accept()[0])
        assert listener.open_connections() == 2
    finally:
        for connection in clients + accepted:
            connection.close()
        listener.close()


def test_descriptor_budget_counts_what_is_open_and_raises_the_soft_limit(monkeypatch):
    resource = pytest.importorskip("resource")
    from ferkit.serve import listener

    monkeypatch.setattr(listener, "open_descriptors", lambda: 140)  # a model held in files
    calls = []
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: calls.append(limits))
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 256))
    budget = listener.descriptor_budget(200)
    margin = 4 * listener.ACCEPT_BURST
    assert budget.ceiling == 256 - 140 - listener.RESERVE
    assert budget.max_connections == budget.ceiling - min(margin, budget.ceiling // 2)
    assert calls == []  # the hard limit is the soft one: nothing to raise
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 4096))
    budget = listener.descriptor_budget(200)
    assert calls == [(140 + listener.RESERVE + margin + 200, 4096)]
    assert (budget.limit, budget.max_connections) == (calls[0][0], 200)
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (150, 150))
    with pytest.raises(FerkitError, match="no room for connections"):
        listener.descriptor_budget(200)


SERVER = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
sys.path.insert(0, {tests!r})
from conftest import tiny_net
from ferkit.serve.app import create_app, run
held = [open(os.devnull) for _ in range(130)]  # descriptors the process needs besides sockets
run(create_app(tiny_net()), port=0)
"""


def test_slowloris_under_a_low_open_file_limit_never_exhausts_descriptors(tmp_path):
    """The issue's case: `ulimit -n 256`, 300 connections stalled mid-headers. With 140 of
    the 256 descriptors already taken, the server must still never fail to accept (EMFILE:
    asyncio's traceback, then a second of deafness) and must answer /api/health."""
    pytest.importorskip("resource")
    import os
    import subprocess
    import sys
    from pathlib import Path

    log = tmp_path / "server.log"
    code = SERVER.format(tests=str(Path(__file__).parent))
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=out,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    flood = []
    try:
        port = None
        for _ in range(1200):  # the model loads; then the server prints its address
            text = log.read_text()
            if "running on http://127.0.0.1:" in text:
                port = int(text.split("running on http://127.0.0.1:")[1].split()[0])
                break
            assert server.poll() is None, text
            threading.Event().wait(0.1)
        assert port, log.read_text()
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            flood.append(connection)
        for _ in range(120):  # a starved server may still be refusing the flood (503)
            threading.Event().wait(0.5)  # the open ones stall meanwhile: fair to close
            with socket.create_connection(("127.0.0.1", port), timeout=30) as visitor:
                visitor.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                status, body = answer(visitor)
            if status != 503:
                break
        assert (status, body.get("status")) == (200, "ok"), body
        assert server.poll() is None
    finally:
        for connection in flood:
            connection.close()
        server.terminate()
        server.wait(timeout=60)
    text = log.read_text()
    assert "Too many open files" not in text and "out of system resource" not in text, text
    assert "the open-file limit is 256" in text  # the cap was lowered, and said so


# ------------------------------------------------------------------ idle streams
def test_a_silent_stream_makes_room_for_a_camera_at_the_stream_cap():
    """Websocket slowloris: idle streams must not lock the live page out (1013)."""
    with client_for(max_streams=1, stream_evict_after=0.2) as c:
        with c.websocket_connect("/api/stream") as squatter:
            squatter.receive_json()  # hello, then silence
            threading.Event().wait(1.0)  # silent for longer than stream_evict_after
            with c.websocket_connect("/api/stream") as camera:
                assert camera.receive_json()["type"] == "hello"
                camera.send_bytes(PHOTO)
                assert camera.receive_json()["type"] == "result"
                assert c.get("/api/health").json()["streams"] == 1
            with pytest.raises(WebSocketDisconnect) as closed:
                squatter.receive_json()
    assert closed.value.code == 1008 and "make room" in closed.value.reason


def test_a_silent_stream_is_closed_after_the_idle_timeout():
    with client_for(stream_idle_timeout=0.5) as c, c.websocket_connect("/api/stream") as ws:
        ws.receive_json()
        for _ in range(120):  # nothing sent: wait (with a wide margin) for the server to close
            threading.Event().wait(0.25)
            if c.get("/api/health").json()["streams"] == 0:
                break
        assert c.get("/api/health").json()["streams"] == 0
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008 and closed.value.reason == "no frame for 0.5 s"
