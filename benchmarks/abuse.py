"""`ferkit serve` under hostile load, next to the same valid clients without it.

A real server (`python -m ferkit serve`, threads 1, started with a 256-descriptor limit
as in the issue's slowloris run) answers 4 websocket clients sending the bundled 400×400
portrait as frames, one in flight each — first alone for --seconds, then for --seconds
again while attackers run the catalogue, in a loop:

- body: a 16-PNG batch of 39.9 megapixels each (≈ 0.6 MB), a single 39.9 MP PNG (within
  the limits: the heaviest valid request), a 74-byte PNG declaring 60000², a declared
  21 MiB body, a text file, garbage bytes;
- origin: a cross-origin POST, a cross-origin websocket, a DNS-rebinding Host header;
- stream: websocket configs {"window": 1e400} and {"window": 10**30}, then a frame;
- slowloris: --slowloris connections (default 300) sending a header byte every 2 s,
  reopened whenever the server closes one, while a prober asks GET /api/health twice a
  second.

Reported: valid clients' frames/s, p50 and p95 latency alone and under attack (target:
p95 within 2×), every hostile answer's status (each must be the expected refusal with a
JSON body), health probes answered during slowloris, the server's peak RSS (VmHWM, target
≤ 1 GB) and open descriptors (of --nofile), whether it survived, and the tracebacks and
ERROR lines in its log (EMFILE counted apart). Loopback only; everything is stopped at the
end.

    python benchmarks/abuse.py [--seconds 60] [--slowloris 300] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from _common import report
from serve import PHOTO, free_port, rss_mb, summarize

MiB = 2**20


def png_bytes(side: int) -> bytes:
    return cv2.imencode(".png", np.zeros((side, side), np.uint8))[1].tobytes()


def png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


HUGE = png_bytes(6320)  # 39.9 megapixels
BOMB = png_header(60_000, 60_000)


class Server:
    """`python -m ferkit serve` on a free loopback port with RLIMIT_NOFILE = `nofile`."""

    def __init__(self, model: str | None, log: Path, nofile: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "ferkit", "serve", "--port", str(self.port),
                   "--threads", "1", "--log-level", "warning"]  # fmt: skip
        if model:
            command += ["--model", model]
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limit
        )

    def wait_ready(self) -> dict:
        import httpx2

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}: {self.log.name}")
            try:
                return httpx2.get(self.url + "/api/health", timeout=2).json()
            except httpx2.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"server did not answer within 180 s: {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def valid_clients(url: str, clients: int, seconds: float) -> dict:
    """N webcam-like websocket clients, one frame in flight each, until the deadline; a
    client that is refused or cut off counts an error and reconnects, as the page does."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    latencies, errors, dropped = [], Counter(), 0
    ws_url = url.replace("http://", "ws://") + "/api/stream"

    async def one_client(deadline: float) -> None:
        nonlocal dropped
        while time.perf_counter() < deadline:
            try:
                async with connect(ws_url, max_size=2**22, open_timeout=30) as ws:
                    await ws.recv()  # hello
                    while time.perf_counter() < deadline:
                        began = time.perf_counter()
                        await ws.send(PHOTO)
                        answer = json.loads(await ws.recv())
                        if answer["type"] == "result":
                            latencies.append(time.perf_counter() - began)
                        elif answer["type"] == "dropped":
                            dropped += 1
                            await asyncio.sleep(1 / 15)  # the next camera frame
                        else:
                            errors[answer.get("detail", answer["type"])[:60]] += 1
            except (OSError, TimeoutError, WebSocketException) as error:
                errors[type(error).__name__] += 1
                await asyncio.sleep(0.2)

    start = time.perf_counter()
    await asyncio.gather(*(one_client(start + seconds) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    result = summarize(latencies, sum(errors.values()), elapsed)
    return {**result, "dropped": dropped, "error_kinds": dict(errors)}


def body_cases() -> list[tuple[str, dict, int]]:
    """(case, httpx request arguments, expected status) for POST /api/predict[/batch]."""
    evil = {"Origin": "http://evil.example"}
    one = {"file": ("a.jpg", PHOTO, "image/jpeg")}
    return [
        ("16 × 39.9 MP batch", {"url": "/api/predict/batch", "files": [
            ("files", (f"{i}.png", HUGE, "image/png")) for i in range(16)]}, 413),
        ("one 39.9 MP PNG (valid)", {"url": "/api/predict",
                                     "files": {"file": ("h.png", HUGE, "image/png")}}, 200),
        ("60000² header bomb", {"url": "/api/predict",
                                "files": {"file": ("b.png", BOMB, "image/png")}}, 413),
        ("text file", {"url": "/api/predict",
                       "files": {"file": ("t.txt", b"hello", "text/plain")}}, 415),
        ("garbage image", {"url": "/api/predict",
                           "files": {"file": ("g.jpg", b"\xff\xd8junk", "image/jpeg")}}, 422),
        ("cross-origin POST", {"url": "/api/predict", "files": one, "headers": evil}, 403),
        ("DNS-rebinding Host", {"url": "/api/predict", "files": one,
                                "headers": {"Host": "evil.example:80"}}, 403),
    ]  # fmt: skip


async def attack(url: str, deadline: float, outcomes: Counter, unexpected: dict) -> None:
    """Run the request catalogue again and again until the deadline."""
    import httpx2
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    ws_url = url.replace("http://", "ws://") + "/api/stream"
    async with httpx2.AsyncClient(base_url=url, timeout=120) as client:
        while time.perf_counter() < deadline:
            for case, request, expected in body_cases():
                try:
                    response = await client.post(**request)
                    got = response.status_code
                    ok = got == expected and (got == 200 or "detail" in response.json())
                except (httpx2.HTTPError, ValueError) as error:
                    got, ok = type(error).__name__, False
                outcomes[(case, ok)] += 1
                if not ok:
                    unexpected[case][str(got)] += 1
            ok, got = await oversize_body(url)
            outcomes[("21 MiB body (declared)", ok)] += 1
            if not ok:
                unexpected["21 MiB body (declared)"][got] += 1
            try:
                async with connect(ws_url, origin="http://evil.example"):
                    ok = False
            except InvalidStatus as error:
                ok = error.response.status_code == 403 and b"detail" in error.response.body
            outcomes[("cross-origin websocket", ok)] += 1
            try:
                await bad_stream_configs(ws_url, outcomes)
            except InvalidStatus as error:  # at the connection cap (slowloris): a JSON 503
                ok = error.response.status_code == 503 and b"detail" in error.response.body
                outcomes[("ws refused at the connection cap (503)", ok)] += 1


async def bad_stream_configs(ws_url: str, outcomes: Counter) -> None:
    """Hostile stream settings must be answered with an error, and the stream go on."""
    from websockets.asyncio.client import connect

    async with connect(ws_url, max_size=2**22) as ws:
        await ws.recv()  # hello
        for text in ('{"window": 1e400}', f'{{"window": {10**30}}}'):
            await ws.send(text)
            answer = json.loads(await ws.recv())
            outcomes[(f"ws config {text[:20]}", answer["type"] == "error")] += 1
        await ws.send(PHOTO)
        answer = json.loads(await ws.recv())
        outcomes[("ws frame after bad configs", answer["type"] == "result")] += 1


async def oversize_body(url: str) -> tuple[bool, str]:
    """Declare a 21 MiB body, send its first bytes: a JSON 413 must come back at once.
    Returns whether it did, and what came back (the status line, or the error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n"
                 b"Content-Type: multipart/form-data; boundary=x\r\n\r\n" % (21 * MiB)
                 + b"x" * 65536)  # fmt: skip
    try:
        head, body = await asyncio.wait_for(read_response(reader), 30)
        got = head.split(b"\r\n")[0].decode("latin-1") or "closed without an answer"
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as error:
        head, body, got = b"", b"", type(error).__name__
    writer.close()
    return head.startswith(b"HTTP/1.1 413") and body.startswith(b'{"detail"'), got


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """A whole HTTP response: its head, then the Content-Length bytes of its body (the
    server may send them in separate segments; one read() can return the head alone)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)  # fmt: skip
    return head, await reader.readexactly(length)


async def slowloris(url: str, count: int, deadline: float, stats: Counter) -> None:
    """Keep `count` connections sending a request's headers one byte every 2 s."""
    port = int(url.rsplit(":", 1)[1])

    async def one() -> None:
        while time.perf_counter() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                stats["opened"] += 1
                while time.perf_counter() < deadline:
                    await asyncio.sleep(2)
                    if reader.at_eof():
                        break
                    writer.write(b"X")
                    await writer.drain()
                answer = await asyncio.wait_for(reader.read(512), 1) if reader.at_eof() else b""
                if answer:
                    stats["closed by server: " + answer.split(b"\r\n")[0].decode()] += 1
                writer.close()
            except (OSError, TimeoutError):
                stats["reset or refused by the server"] += 1
                await asyncio.sleep(0.5)

    await asyncio.gather(*(one() for _ in range(count)))


async def probe_health(url: str, deadline: float, stats: Counter) -> None:
    """GET /api/health twice a second, each on a new connection (as a new visitor)."""
    import httpx2

    limits = httpx2.Limits(max_keepalive_connections=0)
    async with httpx2.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        while time.perf_counter() < deadline:
            try:
                status = (await client.get("/api/health")).status_code
                stats["answered" if status == 200 else f"answered {status}"] += 1
            except httpx2.HTTPError as error:
                stats[f"failed: {type(error).__name__}"] += 1
            await asyncio.sleep(0.5)


async def count_descriptors(pid: int, deadline: float, peak: Counter) -> None:
    """The most descriptors the server held at once, sampled every 20 ms (Linux)."""
    while time.perf_counter() < deadline:
        try:
            peak["descriptors"] = max(peak["descriptors"], len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            return
        await asyncio.sleep(0.02)


async def under_attack(url: str, pid: int, seconds: float, clients: int, loris: int) -> tuple:
    outcomes, loris_stats, health, peak = Counter(), Counter(), Counter(), Counter()
    unexpected = defaultdict(Counter)
    deadline = time.perf_counter() + seconds
    valid, *_ = await asyncio.gather(
        valid_clients(url, clients, seconds),
        attack(url, deadline, outcomes, unexpected),
        slowloris(url, loris, deadline, loris_stats),
        probe_health(url, deadline, health),
        count_descriptors(pid, deadline, peak),
    )
    loris_stats["server's peak open descriptors"] = peak["descriptors"]
    return valid, outcomes, {k: dict(v) for k, v in unexpected.items()}, loris_stats, health


def log_errors(log: str) -> Counter:
    """The last line of each traceback in the server's log, and each ERROR line, counted."""
    errors, lines = Counter(), log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith(" ")), i)
            errors[lines[end][:160]] += 1
        elif line.startswith("ERROR:"):
            errors[line[:160]] += 1
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase (max 120)")
    parser.add_argument("--clients", type=int, default=4, help="valid stream clients")
    parser.add_argument("--slowloris", type=int, default=300, help="half-open connections")
    parser.add_argument("--nofile", type=int, default=256, help="the server's ulimit -n")
    parser.add_argument("--model", default=None, help="served model (default: best available)")
    args = parser.parse_args()
    seconds = max(2.0, min(args.seconds, 120.0))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ferkit-abuse-") as tmp:
        server = Server(args.model, Path(tmp) / "server.log", args.nofile)
        try:
            health = server.wait_ready()
            asyncio.run(valid_clients(server.url, 1, 2.0))  # warm-up
            rss_start = rss_mb(server.process.pid)
            alone = asyncio.run(valid_clients(server.url, args.clients, seconds))
            attacked, outcomes, unexpected, loris, probes = asyncio.run(
                under_attack(server.url, server.process.pid, seconds, args.clients, args.slowloris)
            )
            alive = server.process.poll() is None
            peak = rss_mb(server.process.pid, "VmHWM") if alive else float("nan")
        finally:
            server.stop()
            log = Path(server.log.name).read_text()
    rows = [
        {"phase": name, "clients": args.clients, "frames_per_s": r["per_s"],
         "p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "errors": r["errors"],
         "dropped": r["dropped"], "error_kinds": r["error_kinds"]}
        for name, r in (("valid clients alone", alone), ("under attack", attacked))
    ]  # fmt: skip
    cases = sorted({case for case, _ in outcomes})
    hostile = [{"case": c, "as_expected": outcomes[(c, True)], "not": outcomes[(c, False)],
                "unexpected answers": unexpected.get(c, "")} for c in cases]  # fmt: skip
    ratio = attacked["p95_ms"] / alone["p95_ms"]
    print(f"server: {health['model']}; RSS after warm-up {rss_start:.0f} MiB, "
          f"peak {peak:.0f} MiB; survived: {alive}; tracebacks in its log: "
          f"{log.count('Traceback')}")  # fmt: skip
    print(f"valid p95 under attack / alone: {ratio:.2f}×")
    print("server log errors:", dict(log_errors(log)))
    print(f"slowloris: {dict(loris)}; health probes during it: {dict(probes)}")
    report(
        "abuse", rows, hostile=hostile, slowloris=dict(loris), health_probes=dict(probes),
        server={"model": health["model"], "rss_mib_after_warmup": rss_start,
                "peak_rss_mib": peak, "survived": alive,
                "tracebacks_in_log": log.count("Traceback"),
                "log_errors": dict(log_errors(log)), "emfile": log.count("Errno 24")},
        p95_ratio=ratio, seconds_per_phase=seconds, load_avg_before=load_before,
        command=" ".join(["python", *sys.argv]),
    )  # fmt: skip
    from _common import markdown_table

    print(markdown_table(hostile))


if __name__ == "__main__":
    main()
