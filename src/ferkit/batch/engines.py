"""Where tasks run: a local process pool or a Ray cluster, behind one generator.

`results(tasks, engine, workers, address, on_frames)` yields a `TaskResult` per task as
tasks finish, keeping only a few tasks per worker in flight (the driver never holds the
whole archive's tasks' results at once). Both engines run the same `run_task` in worker
processes that keep their model loaded from task to task, with one torch/OpenCV thread
each (the settings' `threads`); a worker that dies (a crash in a decoder, the
out-of-memory killer) fails the tasks it held, named, and the run goes on. With
`on_frames(task_id, frames)` the workers' frame counts reach the driver while they work
(`ferkit.batch.progress`), collected every `POLL_S` seconds (as often as workers send them).

Local: `ProcessPoolExecutor` with spawned workers (no fork of a process holding threads);
counts come through a `multiprocessing` queue.
Ray: `ray.init(address)` joins a running cluster (its workers must have ferkit installed and
see DIR at the same path: a shared file system), or starts one on this machine with
`workers` CPUs and shuts it down at the end. One actor per CPU (`RayWorker`) runs the tasks
(its model stays loaded) and keeps its frame counts until the driver takes them (a method
of its own concurrency group, so it answers while a task runs; no extra process).
Each actor has its own queue, so the driver hands an actor tasks only while it holds fewer
than `QUEUED_FRAMES` frames: one video at a time (queued behind another, a video can
leave one actor busy at the end of the run while the others idle, which the pool's shared
queue never does), a few dozen images (so between short tasks an actor never waits for the
driver); a finished task's successor is sent before anything else is done with its result.
A cluster this run starts gives its workers the driver's priority, as the pool's workers
have (Ray lowers workers' priority by 15 nice levels by default, which on a busy or
fully used machine hands their CPU time to anything else), and starts them with the
cluster rather than when this driver connects (`enable_worker_prestart`), so they import
Ray while the driver is still joining. An address nothing listens on
is a one-line `ConfigError`, checked before Ray is asked (Ray waits for a missing cluster
for minutes).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator

from ferkit.batch.plan import Task
from ferkit.batch.progress import SEND_EVERY_S
from ferkit.batch.task import TaskResult, init_worker, run_task
from ferkit.errors import ConfigError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2  # local pool: tasks per worker in its shared queue
QUEUED_FRAMES = 30  # Ray: an actor is sent tasks while it holds fewer frames than this
POLL_S = SEND_EVERY_S  # how often frame counts are collected while tasks run (with on_frames)


def results(
    tasks: Iterable[Task],
    engine: str = "local",
    workers: int = 1,
    address: str | None = None,
    on_frames: Callable[[tuple[str, int], int], None] | None = None,
) -> Iterator[TaskResult]:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if address and engine != "ray":
        raise ConfigError("--address is for --engine ray")
    if engine == "ray":
        return _ray(tasks, workers, address, on_frames)
    return _local(tasks, workers, on_frames)


def _failed(task: Task, error: str) -> TaskResult:
    return TaskResult(task.path, task.key, task.part, task.parts, task.start, task.warmup,
                      error=error)  # fmt: skip


def _local(tasks: Iterable[Task], workers: int, on_frames) -> Iterator[TaskResult]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = iter(tasks)
    context = multiprocessing.get_context("spawn")

    def start():  # a fresh counts queue with each pool: a dead worker may have held its lock
        counts = context.Queue() if on_frames else None
        send = None if counts is None else counts.put
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                   initargs=(send,))  # fmt: skip
        return pool, counts

    pool, counts = start()
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
            timeout = POLL_S if counts is not None else None
            finished, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
            _drain_queue(counts, on_frames)
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
                pool, counts = start()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _drain_queue(counts, on_frames)  # counts the workers sent last


def _drain_queue(counts, on_frames) -> None:
    import queue

    while counts is not None:
        try:
            task, frames = counts.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        on_frames(task, frames)


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


def _ray(tasks: Iterable[Task], workers: int, address: str | None,
         on_frames) -> Iterator[TaskResult]:  # fmt: skip
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
                     _system_config={"worker_register_timeout_seconds": 600,
                                     "worker_niceness": 0,
                                     "enable_worker_prestart": True})  # fmt: skip
    except Exception as error:  # Ray raises bare Exceptions for a cluster that did not start
        ray.shutdown()
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(
            f"could not start or join {where}: {str(error).strip().splitlines()[-1]} (Ray's "
            "logs: /tmp/ray/session_latest/logs; on a very busy machine Ray's agents can start "
            "too slowly for it, ray-project/ray#65983)"
        ) from None
    pool: list = []
    try:
        slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
        actor = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0,
                           concurrency_groups={"progress": 1})(RayWorker)  # fmt: skip
        pool = [actor.remote(bool(on_frames)) for _ in range(slots)]
        held = [0] * slots  # frames of the tasks each actor holds
        queue = iter(tasks)
        task = next(queue, None)
        running: dict = {}  # ref → (task, slot, the actor it went to)

        def dispatch() -> None:
            nonlocal task
            while task is not None and (slot := _next_actor(held)) is not None:
                running[pool[slot].run.remote(task)] = (task, slot, pool[slot])
                held[slot] += _held_frames(task)
                task = next(queue, None)

        dispatch()
        taken = time.monotonic()  # when the counts were last taken
        while running:
            timeout = max(0.0, taken + POLL_S - time.monotonic()) if on_frames else None
            ready, _ = ray.wait(list(running), num_returns=1, timeout=timeout)
            finished = []
            for ref in ready:
                done, slot, worker = running.pop(ref)
                held[slot] -= _held_frames(done)
                try:
                    finished.append(ray.get(ref))
                except ray.exceptions.RayError as error:
                    if isinstance(error, ray.exceptions.RayActorError) and pool[slot] is worker:
                        pool[slot] = actor.remote(bool(on_frames))  # a dead worker: another
                    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                    finished.append(_failed(done, f"Ray: {type(error).__name__}: {first}"))
            dispatch()  # the freed actor's next task before the driver handles the result
            if time.monotonic() - taken >= POLL_S:  # a call to every actor: not once per task
                _take_counts(ray, pool, on_frames)
                taken = time.monotonic()
            yield from finished
    finally:
        try:
            _take_counts(ray, pool, on_frames)  # counts of the last tasks
        finally:
            ray.shutdown()


def _next_actor(held: list[int]) -> int | None:
    """The actor the next task goes to: the one holding the fewest frames, unless even it
    holds `QUEUED_FRAMES` or more (None: the task waits in the driver)."""
    slot = held.index(min(held))
    return slot if held[slot] < QUEUED_FRAMES else None


def _held_frames(task: Task) -> int:
    """Frames an actor holding `task` has to do, as the plan counted them (1 for an image,
    and for a video whose header gives no count)."""
    return task.frames or 1


def _take_counts(ray, pool: list, on_frames) -> None:
    if not on_frames or not pool:
        return
    for call in [w.take.options(concurrency_group="progress").remote() for w in pool]:
        try:
            counts = ray.get(call)
        except ray.exceptions.RayError:  # a dead worker: its tasks fail, its counts go
            continue
        for task, frames in counts:
            on_frames(task, frames)


class RayWorker:
    """A Ray actor per CPU: runs tasks one after another in one process, so the model is
    loaded once (`task.recognizer_for`), and keeps the frame counts of its tasks until
    the driver `take`s them (from another thread: the "progress" concurrency group)."""

    def __init__(self, progress: bool = False) -> None:
        import threading

        self._lock = threading.Lock()
        self._counts: dict = {}
        if progress:
            init_worker(self._add)

    def _add(self, message) -> None:
        task, frames = message
        with self._lock:
            self._counts[task] = self._counts.get(task, 0) + frames

    def run(self, task: Task) -> TaskResult:
        return run_task(task)

    def take(self) -> list:
        with self._lock:
            counts, self._counts = self._counts, {}
        return list(counts.items())
