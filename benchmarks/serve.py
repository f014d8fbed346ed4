"""`ferkit serve` under load: N concurrent clients on loopback against a real uvicorn server.

The server is a subprocess (`python -m ferkit serve`, the best available model unless
--model is given, one port on 127.0.0.1); the clients are asyncio tasks in this process.
For each server setting (--threads, torch/OpenCV threads per inference) and each scenario,
N clients send requests back to back for a fixed time, each waiting for its answer:

- health: GET /api/health — the HTTP stack alone, the ceiling any endpoint can reach;
- predict: POST /api/predict with the bundled 400×400 portrait (one face);
- stream: websocket clients sending that portrait as frames, one in flight each; the
  server's per-connection rate cap (15 frames/s) applies, so dropped frames are counted.

Reported per row: requests (frames) answered per second, p50/p95 latency, errors (any
non-200 answer, refused frame or exception; the target is 0), and the server's resident
memory after the row. The scenarios run --rounds times: memory after warm-up and after each
round is the check for growth. The load average before and after is recorded (the machine
is shared). Everything is bounded: at most 32 clients, 60 s per scenario and 5 rounds,
loopback only, and the server is stopped at the end.

    python benchmarks/serve.py [--clients 4] [--seconds 5] [--rounds 2] [--threads 1,2]
                               [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import report
from ferkit.infer.demo import sample_image

MAX_CLIENTS, MAX_SECONDS = 32, 60.0
PHOTO = sample_image().read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Memory of a process in MiB from Linux /proc: resident now (VmRSS) or its peak so far
    (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """`python -m ferkit serve` on a free loopback port, stopped on exit."""

    def __init__(self, threads: int, model: str | None, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "ferkit", "serve", "--port", str(self.port),
                   "--threads", str(threads), "--log-level", "warning"]  # fmt: skip
        if model:
            command += ["--model", model]
        self.log = open(log, "w")  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Server:
        import httpx2

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}: {self.log.name}")
            try:
                self.health = httpx2.get(self.url + "/api/health", timeout=2).json()
                return self
            except httpx2.HTTPError:
                time.sleep(0.3)
        raise SystemExit(f"server did not answer within 120 s: {self.log.name}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    @property
    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)


async def http_load(url: str, scenario: str, clients: int, seconds: float) -> dict:
    """N clients sending one request after another until the deadline."""
    import httpx2

    latencies, errors = [], 0
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client(deadline: float) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    if scenario == "health":
                        response = await client.get("/api/health")
                    else:
                        files = {"file": ("astronaut.jpg", PHOTO, "image/jpeg")}
                        response = await client.post("/api/predict", files=files)
                    ok = response.status_code == 200
                except httpx2.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(one_client(start + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return summarize(latencies, errors, elapsed)


async def stream_load(url: str, clients: int, seconds: float) -> dict:
    """N websocket clients, each with one frame in flight, until the deadline."""
    import json

    from websockets.asyncio.client import connect

    latencies, errors, dropped = [], 0, 0
    ws_url = url.replace("http://", "ws://") + "/api/stream"

    async def one_client(deadline: float) -> None:
        nonlocal errors, dropped
        try:
            async with connect(ws_url, max_size=2**22) as ws:
                json.loads(await ws.recv())  # hello
                while time.perf_counter() < deadline:
                    began = time.perf_counter()
                    await ws.send(PHOTO)
                    answer = json.loads(await ws.recv())
                    if answer["type"] == "result":
                        latencies.append(time.perf_counter() - began)
                    elif answer["type"] == "dropped":
                        dropped += 1
                        await asyncio.sleep(0.01)  # a real client waits for its next frame
                    else:
                        errors += 1
        except OSError:
            errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(one_client(start + seconds) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    return {**summarize(latencies, errors, elapsed), "dropped": dropped}


def summarize(latencies: list[float], errors: int, elapsed: float) -> dict:
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "answered": len(latencies),
        "per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario")
    parser.add_argument("--rounds", type=int, default=2, help="repeats (memory must not grow)")
    parser.add_argument("--threads", default="1,2", help="server settings to compare")
    parser.add_argument("--model", default=None, help="served model (default: best available)")
    args = parser.parse_args()
    clients = max(1, min(args.clients, MAX_CLIENTS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    args.rounds = max(1, min(args.rounds, 5))
    load_before = os.getloadavg()
    rows, servers = [], []
    with tempfile.TemporaryDirectory(prefix="ferkit-serve-bench-") as tmp:
        for threads in (int(t) for t in args.threads.split(",")):
            with Server(threads, args.model, Path(tmp) / f"server-{threads}.log") as server:
                asyncio.run(http_load(server.url, "predict", clients, 1.0))  # warm-up
                asyncio.run(stream_load(server.url, 1, 1.0))
                rss = [server.rss_mb]
                for round_ in range(1, args.rounds + 1):
                    for scenario in ("health", "predict", "stream"):
                        if scenario == "stream":
                            result = asyncio.run(stream_load(server.url, clients, seconds))
                        else:
                            result = asyncio.run(http_load(server.url, scenario, clients, seconds))
                        rows.append({
                            "threads": threads, "round": round_, "scenario": scenario,
                            "clients": clients, "answered": result["answered"],
                            "per_s": result["per_s"], "p50_ms": result["p50_ms"],
                            "p95_ms": result["p95_ms"], "errors": result["errors"],
                            "dropped": result.get("dropped", 0), "rss_mib": server.rss_mb,
                        })  # fmt: skip
                    rss.append(server.rss_mb)
                servers.append({
                    "threads": threads, "model": server.health["model"],
                    "trained": server.health["trained"], "rss_mib_after_warmup": rss[0],
                    "rss_mib_after_each_round": rss[1:],
                })  # fmt: skip
    for s in servers:
        rounds = " → ".join(f"{v:.1f}" for v in s["rss_mib_after_each_round"])
        print(f"threads={s['threads']}: server RSS after warm-up {s['rss_mib_after_warmup']:.1f}"
              f" MiB, after each round {rounds} MiB; model: {s['model']}")  # fmt: skip
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")  # fmt: skip
    report(
        "serve", rows, clients=clients, seconds_per_scenario=seconds, rounds=args.rounds,
        servers=servers,
        load_avg_before=load_before, command=" ".join(["python", *sys.argv]),
    )  # fmt: skip


if __name__ == "__main__":
    main()
