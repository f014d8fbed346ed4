"""The task function: one file (or one time range of a long video) → one Parquet part.

`run_task` is what every engine runs, unchanged, in a local worker process or on a Ray
worker: it builds the `Recognizer` from the task's settings (once per process), streams the
frames through `Recognizer.frames` — the code `ferkit predict` runs — and writes one row per
face per frame while they arrive, in row groups of `ROWS_PER_GROUP`. Nothing grows with the
video's length: per track it keeps counts and sums (`Tally`), not the rows. Errors are
returned, not raised, so one bad file never stops the others; the part file appears
(atomically) only when the task finished.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.batch.output import RowWriter, part_path
from ferkit.batch.plan import Task
from ferkit.errors import FerkitError, SourceError

log = logging.getLogger(__name__)

_RECOGNIZERS: dict[str, object] = {}  # one per settings, per worker process
_SENDER = None  # this worker's FrameSender (progress), set by init_worker


def init_worker(send=None) -> None:
    """Set up a worker process (the pool's initializer, a Ray actor's constructor): frame
    counts of its tasks go to `send((task_id, frames))` (`ferkit.batch.progress`)."""
    from ferkit.batch.progress import FrameSender

    global _SENDER
    _SENDER = FrameSender(send) if send is not None else None


@dataclass
class Tally:
    """Streaming per-track summary: frames, first/last time, label counts, probability sums."""

    class_names: tuple[str, ...]
    tracks: dict[int, dict] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)

    def add(self, result) -> None:
        for face in result.faces:
            self.labels[face.label] = self.labels.get(face.label, 0) + 1
            if face.track_id is None:
                continue
            t = result.time_s or 0.0
            row = self.tracks.get(face.track_id)
            if row is None:
                row = self.tracks[face.track_id] = {
                    "frames": 0, "start_s": t, "end_s": t, "labels": {},
                    "prob_sum": [0.0] * len(self.class_names),
                }  # fmt: skip
            row["frames"] += 1
            row["end_s"] = t
            row["labels"][face.label] = row["labels"].get(face.label, 0) + 1
            for i, name in enumerate(self.class_names):
                row["prob_sum"][i] += face.probs[name]


@dataclass
class TaskResult:
    """What a task sends back: counts, the per-track tally, the faces of its warm-up frames
    (to join its tracks to the previous range's), or the error that stopped it."""

    path: str
    key: str
    part: int
    parts: int
    start: int = 0
    warmup: int = 0
    error: str | None = None
    warning: str | None = None
    frames: int = 0
    faces: int = 0
    fps: float | None = None
    is_video: bool = False
    last_time_s: float | None = None
    class_names: tuple[str, ...] = ()
    tracks: dict[int, dict] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    overlap: list[tuple[int, int, tuple]] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def recognizer_for(settings: dict):
    """The worker's `Recognizer` for these settings, built on first use (the model loads once
    per process, not once per file), with the CPU threads the settings ask for."""
    import json

    from ferkit.batch.settings import build_recognizer

    key = json.dumps(settings, sort_keys=True)
    if key not in _RECOGNIZERS:
        _RECOGNIZERS.clear()
        _RECOGNIZERS[key] = build_recognizer(settings)
    return _RECOGNIZERS[key]


def run_task(task: Task) -> TaskResult:
    """Recognise the task's frames and write its part file; never raises for bad input."""
    start = time.perf_counter()
    result = TaskResult(task.path, task.key, task.part, task.parts, task.start, task.warmup)
    if _SENDER is not None:
        _SENDER.start((task.key, task.part))
    try:
        _run(task, result)
    except FerkitError as error:
        result.error = str(error)
    except Exception as error:  # a decoder or library failure on one file must not stop the run
        log.exception("%s failed", task.path)
        result.error = f"{type(error).__name__}: {error}"
    finally:
        if _SENDER is not None:
            _SENDER.flush()
    result.seconds = time.perf_counter() - start
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _run(task: Task, result: TaskResult) -> None:
    from ferkit.files import atomic_path
    from ferkit.infer.frames import load_source

    recognizer = recognizer_for(task.settings["recognizer"])
    names = tuple(recognizer.class_names)
    result.class_names = names
    tally = Tally(names)
    if task.parts == 1:
        source = load_source(task.path)
    else:
        source = range_source(task.path, task.start - task.warmup, task.stop)
    result.fps, result.is_video = source.fps, source.is_video
    with atomic_path(part_path(Path(task.out), task.key, task.part, task.parts)) as tmp:
        writer = RowWriter(tmp, names)
        try:
            for _, frame_result in recognizer.frames(source):
                if frame_result.index < task.start:  # warm-up: kept only to join tracks
                    result.overlap += [
                        (frame_result.index, f.track_id, f.box)
                        for f in frame_result.faces
                        if f.track_id is not None
                    ]
                    continue
                writer.add(frame_result)
                tally.add(frame_result)
                result.frames += 1
                result.faces += len(frame_result.faces)
                if _SENDER is not None:
                    _SENDER.add()
                result.last_time_s = frame_result.time_s
        finally:
            writer.close()
    if source.failures:
        result.warning = "; ".join(reason for _, reason in source.failures)
    if result.frames == 0 and task.parts == 1:
        raise SourceError(f"{task.path}: no frame could be read")
    result.tracks, result.labels = tally.tracks, tally.labels


def range_source(path: str, first: int, stop: int | None):
    """A `Source` of frames [first, stop) of a video file, indexed and timed as
    `load_source` indexes and times the whole file (so rows match `ferkit predict`)."""
    import cv2

    from ferkit.infer.frames import DEFAULT_FPS, Frame, Source

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}: unreadable, unsupported or unreachable")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if first:
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    source = Source(path, is_video=True, fps=fps, frame_count=count or None)
    end = stop if stop is not None else count

    def frames() -> Iterator[Frame]:
        index = first
        try:
            while stop is None or index < stop:
                ok, image = capture.read()
                if not ok or image is None:
                    break
                yield Frame(index, index / fps, image, path)
                index += 1
        finally:
            capture.release()
        if end and index < end - (0 if stop is not None else 1):
            reason = f"stopped at frame {index} of {count}: the rest could not be decoded"
            source.failures.append((path, reason))

    source._frames = frames()
    return source
