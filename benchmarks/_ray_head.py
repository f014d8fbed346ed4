"""A Ray cluster started the way a cluster user starts one, before a timed run joins it.

`ferkit batch --engine ray` without `--address` starts and stops a one-machine cluster
inside the run, and the benchmark's time includes both; a user with a cluster starts it
once (`ray start --head`) and passes `--address`, so a run pays neither. To time that,
`ray_head(cpus)` starts `ray start --head --block` in a process of its own, waits until
the cluster is up, yields its address for `run_batch(..., engine="ray", address=...)`, and
stops it afterwards — also when the run fails — by sending SIGTERM to that one process
(`--block` stops the GCS, raylet and workers it started; its reaper does so if it dies).
Never `ray stop`, which would stop every Ray cluster on the machine, other users' too.

The head inherits this process's environment, so a driver here joins with the same
authentication; `use_token_auth()`, called before Ray's first use in the process, makes it
Ray's token authentication for every run (`RAY_AUTH_MODE=token` and a token of the
process's own in `RAY_AUTH_TOKEN`, unless the environment sets them): Ray 2.60's
`ray.init` turns it on for a cluster it starts itself, `ray start` only where
`~/.ray/auth_token` exists, and a driver joining by address only when told. Mixed, runs
fail: a head with a token refuses the driver, and a driver that ran a self-started cluster
earlier in the same process lost every actor (ActorDiedError) on a head without one.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STARTED = "Ray runtime started"  # what `ray start` prints once the head node is up


class HeadDidNotStart(RuntimeError):
    """`ray start --head` exited or timed out before the cluster was up (on a very busy
    machine Ray's own start-up deadlines can pass: ray-project/ray#65983)."""


def use_token_auth() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def ray_head(cpus: int, timeout_s: float = 300.0) -> Iterator[str]:
    """Yield "127.0.0.1:PORT" of a fresh head node with `cpus` CPUs, stopped on exit.

    No dashboard, and workers at the driver's priority (`worker_niceness` 0), as in the
    cluster `ferkit batch` starts itself: Ray's default, nice 15, hands a shared
    machine's CPU to anything else running (a first try here, beside two unpaused nice-5
    jobs, ran its two workers at 19 % CPU each); Ray's defaults otherwise."""
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    command = [str(ray), "start", "--head", f"--num-cpus={cpus}", f"--port={port}",
               "--include-dashboard=false", "--disable-usage-stats",
               '--system-config={"worker_niceness": 0}', "--block"]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                log.seek(0)
                text = log.read()
                if STARTED in text:
                    break
                if head.poll() is not None or time.monotonic() > deadline:
                    raise HeadDidNotStart(f"`ray start --head` did not start:\n{text[-2000:]}")
                time.sleep(0.2)
            yield f"127.0.0.1:{port}"
        finally:
            head.terminate()
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:  # its own session: kill what it left behind
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
