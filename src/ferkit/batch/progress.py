"""The one progress bar of a batch run: frames over every worker, with frames/s, an ETA and
the files done, failed and skipped.

Workers count the frames they report and send the counts while they work, tagged with their
task: at most every `SEND_EVERY_S` seconds and once when a task ends, so a worker sends a
few small messages a second and never per-frame state (`FrameSender`; the local pool's
workers send through a `multiprocessing` queue, Ray's actors keep them until the driver
asks). The driver feeds them to `BatchProgress`, which also hears of each finished task
and file.

The total is counted before any work starts: each video's frame count from its header
(OpenCV's `CAP_PROP_FRAME_COUNT`; a time range its share of it), 1 per image. Headers can
lie (a truncated recording, a variable frame rate, a container that does not store the
count, where 1 is assumed): while such a file runs the bar stops short of its share or runs
past it and the ETA is off by the difference. When a task finishes its exact count replaces
the counts it sent and the total is corrected by the header's error, so at the end the bar
shows exactly the frames reported (one per frame of every file done, as in the rows); the
frames of a file that failed are taken out of both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SEND_EVERY_S = 0.5

TaskId = tuple[str, int]  # (file key, part)


class FrameSender:
    """Worker side: counts a task's frames and hands them to `send((task_id, frames))` at
    most every `every_s` seconds, the rest when the task ends (`flush`)."""

    def __init__(
        self, send: Callable[[tuple[TaskId, int]], object], every_s: float = SEND_EVERY_S
    ) -> None:
        self.send, self.every_s = send, every_s
        self.task: TaskId | None = None
        self.count, self.last = 0, 0.0

    def start(self, task: TaskId) -> None:
        self.task, self.count, self.last = task, 0, time.monotonic()

    def add(self, frames: int = 1) -> None:
        self.count += frames
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.count and self.task is not None:
            self.send((self.task, self.count))
        self.count, self.last = 0, now if now is not None else time.monotonic()


class BatchProgress:
    """Driver side: the bar (rich), and the numbers it shows (`completed`, `total`,
    `done`, `failed`, `skipped`; `streamed`: frames heard from workers, late ones too)."""

    def __init__(self, console=None, show: bool = True) -> None:
        self.console, self.show = console, show
        self.files = self.done = self.failed = self.skipped = 0
        self.completed = self.total = self.streamed = 0
        self._running: dict[TaskId, int] = {}  # frames heard per task in flight
        self._expected: dict[TaskId, int] = {}
        self._progress = None

    # ------------------------------------------------------------------ driver calls
    def start(self, files: int, skipped: int, expected: dict[TaskId, int]) -> None:
        """`files` to process (besides `skipped` done before); frames expected per task."""
        self.files, self.skipped = files, skipped
        self._expected = dict(expected)
        self.total = sum(self._expected.values())
        self._running = {task: 0 for task in self._expected}
        if self.show:
            self._open()

    def frames(self, task: TaskId, count: int) -> None:
        """Frames a worker reports for a task in flight (ignored once the task is done)."""
        self.streamed += count
        if task in self._running:
            self._running[task] += count
            self.completed += count
            self._refresh()

    def task_done(self, task: TaskId, frames: int, ok: bool) -> None:
        """A task is back: its exact count replaces what was heard, the header's error
        leaves the total; a failed task's frames leave both."""
        heard = self._running.pop(task, 0)
        expected = self._expected.pop(task, 0)
        if ok:
            self.completed += frames - heard
            self.total += frames - expected
        else:
            self.completed -= heard
            self.total -= expected
        self._refresh()

    def file_done(self, failed: bool, retract: int = 0) -> None:
        """A file is finished; `retract`: frames of its parts that succeeded when another
        failed (the file's rows are not kept, so neither are its frames on the bar)."""
        self.done += 1
        self.failed += failed
        self.completed -= retract
        self.total -= retract
        self._refresh()

    def stop(self) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------------ display
    def description(self) -> str:
        parts = [f"files {self.done}/{self.files}"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} done before")
        return " · ".join(parts)

    def _open(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )  # fmt: skip
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task) -> Text:
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.1f} frames/s" if speed else "- frames/s")

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("frames ·"), Rate(), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console,
        )  # fmt: skip
        self._task = self._progress.add_task(self.description(), total=self.total)
        self._progress.start()

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.completed,
                                  total=max(self.total, self.completed),
                                  description=self.description())  # fmt: skip
