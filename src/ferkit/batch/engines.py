"""Where tasks run: a local process pool or a Ray cluster, behind one generator.

`results(tasks, engine, workers, address)` yields a `TaskResult` per task as tasks finish,
keeping at most two tasks per worker in flight (the driver never holds the whole archive's
tasks' results at once). Both engines run the same `run_task`; a worker that dies (a crash
in a decoder, the out-of-memory killer) fails the tasks it held, named, and the run goes on.

Local: `ProcessPoolExecutor` with spawned workers (no fork of a process holding threads).
Ray: `ray.init(address)` joins a running cluster (its workers must have ferkit installed and
see DIR at the same path: a shared file system), or starts one on this machine with
`workers` CPUs and shuts it down at the end. An address nothing listens on is a
one-line `ConfigError`, checked before Ray is asked (Ray waits for a missing cluster for
minutes).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Iterator

from ferkit.batch.plan import Task
from ferkit.batch.task import TaskResult, run_task
from ferkit.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2


def results(
    tasks: Iterable[Task], engine: str = "local", workers: int = 1, address: str | None = None
) -> Iterator[TaskResult]:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if address and engine != "ray":
        raise ConfigError("--address is for --engine ray")
    if engine == "ray":
        return _ray(tasks, workers, address)
    return _local(tasks, workers)


def _failed(task: Task, error: str) -> TaskResult:
    return TaskResult(task.path, task.key, task.part, task.parts, task.start, task.warmup,
                      error=error)  # fmt: skip


def _local(tasks: Iterable[Task], workers: int) -> Iterator[TaskResult]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = iter(tasks)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context)
    running: dict = {}
    try:
        while True:
            while len(running) < IN_FLIGHT_PER_WORKER * workers:
                task = next(queue, None)
                if task is None:
                    break
                running[pool.submit(run_task, task)] = task
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                task = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    yield _failed(task, "the worker process died while processing this file")
            if broken:  # every task the pool held is lost with it: fail them, start afresh
                for future, task in running.items():
                    future.cancel()
                    yield _failed(task, "the worker process died while processing this file")
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=context)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_address(address: str) -> None:
    """A one-line error unless something listens at host:port (ray:// and 'auto' pass)."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT of a Ray cluster's head, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error}"
        ) from None


def _ray(tasks: Iterable[Task], workers: int, address: str | None) -> Iterator[TaskResult]:
    if address:
        check_address(address)
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray: pip install 'ferkit[ray]' (or pip install ray)"
        ) from None
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # workers import torch: give a busy machine time to register them
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet,
                     _system_config={"worker_register_timeout_seconds": 600})  # fmt: skip
    except Exception as error:  # Ray raises bare Exceptions for a cluster that did not start
        ray.shutdown()
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(
            f"could not start or join {where}: {str(error).strip().splitlines()[-1]} (Ray's "
            "logs: /tmp/ray/session_latest/logs; on a very busy machine Ray's agents can start "
            "too slowly for it, ray-project/ray#65983)"
        ) from None
    try:
        slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        queue = iter(tasks)
        running: dict = {}
        while True:
            while len(running) < IN_FLIGHT_PER_WORKER * slots:
                task = next(queue, None)
                if task is None:
                    break
                running[remote.remote(task)] = task
            if not running:
                return
            (ref,), _ = ray.wait(list(running), num_returns=1)
            task = running.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                yield _failed(task, f"Ray: {type(error).__name__}: {first}")
    finally:
        ray.shutdown()
