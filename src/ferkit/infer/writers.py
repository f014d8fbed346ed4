"""Outputs of a recognition run, written while frames arrive.

`record()` drives a `Recognizer` over a source and writes into one folder:

- `<name>_annotated.mp4` (videos; OpenCV mp4v) or `annotated/<image>.jpg` (stills),
- `<name>.gif` (optional, downscaled, Pillow),
- `faces.csv` (one row per face and frame: time, track id, box, label, all probabilities),
- `frames.jsonl` (one `FrameResult.to_dict()` per frame, also frames without faces),
- `summary.json` (per track: frames, seconds, dominant emotion, share of time per emotion;
  failures of a folder; whether the run was interrupted),
- `timeline.png` (videos: each track's probabilities over time; matplotlib, Agg).

Every file is written under a temporary name and renamed when complete, so a crash leaves
no half-written output; Ctrl-C stops cleanly and keeps everything processed so far.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.errors import ConfigError
from ferkit.files import atomic_path, atomic_text, save_figure
from ferkit.infer.frames import Source, load_source
from ferkit.infer.results import FrameResult, RunSummary, draw_faces

log = logging.getLogger(__name__)

GIF_MAX_SIDE = 320
GIF_MAX_FPS = 10.0
GIF_MAX_FRAMES = 300
TIMELINE_MAX_TRACKS = 8


def _part(path: Path) -> Path:
    """Temporary name beside `path` that keeps its suffix (OpenCV picks a container by it)."""
    return path.with_name(f"{path.stem}.part{path.suffix}")


class VideoSink:
    """Annotated frames → mp4 (mp4v codec) at the source's frame rate."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.frames = path, fps, 0
        self._writer = None

    def add(self, image: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(_part(self.path)), fourcc, self.fps, size)
            if not self._writer.isOpened():
                raise ConfigError(f"OpenCV cannot write mp4 video to {self.path}")
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            os.replace(_part(self.path), self.path)


class GifSink:
    """Annotated frames → an animated GIF, downscaled and thinned to at most 10 fps."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.step = max(1, round(fps / GIF_MAX_FPS))
        self.duration_ms = int(round(1000 * self.step / fps))
        self._frames: list = []
        self._seen = 0

    def add(self, image: np.ndarray) -> None:
        import cv2
        from PIL import Image

        self._seen += 1
        if (self._seen - 1) % self.step or len(self._frames) >= GIF_MAX_FRAMES:
            return
        scale = min(1.0, GIF_MAX_SIDE / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        self._frames.append(Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB)))

    def close(self) -> None:
        if not self._frames:
            return
        first, rest = self._frames[0], self._frames[1:]
        first.save(_part(self.path), format="GIF", save_all=True, append_images=rest,
                   duration=self.duration_ms, loop=0)  # fmt: skip
        os.replace(_part(self.path), self.path)


class TableSink:
    """Per-face CSV rows and per-frame JSON lines, streamed to disk."""

    def __init__(self, folder: Path, class_names: tuple[str, ...]) -> None:
        self.csv_path, self.jsonl_path = folder / "faces.csv", folder / "frames.jsonl"
        self.class_names = class_names
        self._csv_file = open(_part(self.csv_path), "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._jsonl = open(_part(self.jsonl_path), "w", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["source", "frame", "time_s", "track_id", "x", "y", "w", "h", "label",
                            "score", *(f"p_{name}" for name in class_names)])  # fmt: skip

    def add(self, result: FrameResult) -> None:
        self._jsonl.write(result.to_json() + "\n")
        time_s = "" if result.time_s is None else f"{result.time_s:.4f}"
        for face in result.faces:
            track = "" if face.track_id is None else face.track_id
            probs = [f"{face.probs[name]:.5f}" for name in self.class_names]
            self._csv.writerow([result.source or "", result.index, time_s, track, *face.box,
                                face.label, f"{face.score:.5f}", *probs])  # fmt: skip

    def close(self) -> None:
        for handle, path in ((self._csv_file, self.csv_path), (self._jsonl, self.jsonl_path)):
            handle.close()
            os.replace(_part(path), path)


@dataclass
class TrackStats:
    """Per-track history (times, probabilities, labels) for the summary and the timeline."""

    class_names: tuple[str, ...]
    times: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    probs: dict[int, list[list[float]]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, result: FrameResult) -> None:
        for face in result.faces:
            if face.track_id is None:
                continue
            self.times[face.track_id].append(result.time_s or 0.0)
            self.probs[face.track_id].append([face.probs[n] for n in self.class_names])
            self.labels[face.track_id].append(face.label)

    def summary(self) -> list[dict]:
        """Per track: frames, first/last second, dominant emotion, share of frames per label."""
        rows = []
        for track_id in sorted(self.labels):
            labels = self.labels[track_id]
            share = {n: labels.count(n) / len(labels) for n in self.class_names}
            mean = np.mean(self.probs[track_id], axis=0)
            rows.append({
                "track_id": track_id,
                "frames": len(labels),
                "start_s": round(self.times[track_id][0], 3),
                "end_s": round(self.times[track_id][-1], 3),
                "dominant": max(share, key=share.get),
                "share": {n: round(v, 4) for n, v in share.items()},
                "mean_probs": {n: round(float(v), 4) for n, v in zip(self.class_names, mean)},
            })  # fmt: skip
        return rows


def plot_timeline(stats: TrackStats, path: Path) -> Path | None:
    """One panel per track (the longest few): probability of each emotion over time, on
    one time axis for the whole run; tracks of a frame or two are drawn as points."""
    if not stats.labels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ferkit.infer.results import COLORS

    tracks = sorted(stats.labels, key=lambda t: -len(stats.labels[t]))[:TIMELINE_MAX_TRACKS]
    fig, axes = plt.subplots(len(tracks), 1, figsize=(9, 2.2 * len(tracks) + 0.6), squeeze=False,
                             sharex=True)  # fmt: skip
    every = [t for times in stats.times.values() for t in times]
    start, end = min(every), max(every)
    pad = max(0.02 * (end - start), 0.05)
    for ax, track_id in zip(axes[:, 0], sorted(tracks), strict=True):
        times, probs = stats.times[track_id], np.asarray(stats.probs[track_id])
        marker = "o" if len(times) < 3 else None
        for i, name in enumerate(stats.class_names):
            b, g, r = COLORS.get(name, (0, 0, 0))
            ax.plot(times, probs[:, i], label=name, color=(r / 255, g / 255, b / 255), lw=1.5,
                    marker=marker, ms=4)  # fmt: skip
        ax.set_ylim(0, 1)
        ax.set_xlim(start - pad, end + pad)
        ax.set_ylabel(f"track {track_id}")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(ncol=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def record(recognizer, source, out: str | Path, *, camera: int | None = None,
           video: bool = True, gif: bool = False, show: bool = False,
           max_frames: int | None = None, progress: bool = False) -> RunSummary:  # fmt: skip
    """Run `recognizer` over `source` and write the outputs listed above into `out`."""
    src = source if isinstance(source, Source) else load_source(source, camera=camera)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(src)
    summary = RunSummary(source=src.name)
    tables, stats = TableSink(folder, recognizer.class_names), TrackStats(recognizer.class_names)
    sinks: list = []
    if src.is_video and video:
        sinks.append(VideoSink(folder / f"{stem}_annotated.mp4", src.fps))
    if src.is_video and gif:
        sinks.append(GifSink(folder / f"{stem}.gif", src.fps))
    window = _Window(src.name) if show else None
    bar = _progress(src, max_frames) if progress else None
    start = time.perf_counter()
    try:
        for frame, result in recognizer.frames(src):
            annotated = draw_faces(frame.image, result.faces, fps=summary.fps if show else None)
            for sink in sinks:
                sink.add(annotated)
            if not src.is_video and video:
                summary.files.append(
                    str(_write_still(folder, frame.index, frame.name, annotated, src))
                )
                summary.images.append({"file": frame.name, "faces": len(result.faces),
                                       "labels": [f.label for f in result.faces]})  # fmt: skip
            tables.add(result)
            stats.add(result)
            summary.frames += 1
            summary.faces += len(result.faces)
            summary.seconds = time.perf_counter() - start
            if bar is not None:
                bar[0].advance(bar[1])
            if window is not None and not window.show(annotated):
                break
            if max_frames is not None and summary.frames >= max_frames:
                break
    except KeyboardInterrupt:
        summary.interrupted = True
        log.warning("interrupted after %d frames; keeping what was written", summary.frames)
    finally:
        if bar is not None:
            bar[0].stop()
        if window is not None:
            window.close()
        for sink in [*sinks, tables]:
            sink.close()
    summary.failures = list(src.failures)
    summary.tracks = stats.summary()
    summary.files += [str(s.path) for s in sinks if Path(s.path).exists()]
    summary.files += [str(tables.csv_path), str(tables.jsonl_path)]
    timeline = plot_timeline(stats, folder / "timeline.png")
    if timeline is not None:
        summary.files.append(str(timeline))
    summary_path = folder / "summary.json"
    summary.files.append(str(summary_path))
    _write_json(summary_path, summary.to_dict())
    return summary


def _stem(src: Source) -> str:
    name = Path(src.name.split("?")[0].rstrip("/")).stem if src.name else ""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return cleaned or "output"


def _write_still(folder: Path, index: int, name: str, annotated: np.ndarray, src: Source) -> Path:
    import cv2

    if src.frame_count == 1:
        path = folder / f"{_stem(src)}_annotated.jpg"
    else:
        (folder / "annotated").mkdir(exist_ok=True)
        path = folder / "annotated" / f"{index:04d}_{Path(name).stem}.jpg"  # names may repeat
    ok, data = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ConfigError(f"cannot encode the annotated image of {name}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def _write_json(path: Path, data: dict) -> None:
    atomic_text(path, json.dumps(data, indent=2))


def _progress(src: Source, max_frames: int | None):
    from rich.progress import Progress

    total = (
        src.frame_count if max_frames is None else min(src.frame_count or max_frames, max_frames)
    )
    bar = Progress(transient=False)
    bar.start()
    return bar, bar.add_task(f"recognising {src.name}", total=total)


class _Window:
    """Live preview with OpenCV's GUI; needs opencv-python (the -headless build has none)."""

    def __init__(self, title: str) -> None:
        import cv2

        self.title = f"ferkit: {title}"
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as error:
            raise ConfigError(
                "--show needs a GUI build of OpenCV (pip install opencv-python instead of "
                "opencv-python-headless)"
            ) from error

    def show(self, image: np.ndarray) -> bool:
        """Display a frame; False when the user pressed q or Esc."""
        import cv2

        cv2.imshow(self.title, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.title)
