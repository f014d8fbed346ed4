"""What a batch run has to do: SOURCES → files → tasks.

SOURCES are files, folders (searched recursively for images and videos), globs, or text
files listing any of these (`.txt`/`.lst`, one per line, `#` comments; relative lines are
relative to the listing's folder). A path that does not exist is not an error of the run: it
becomes a `Missing` entry, listed in the failure table with the other files that failed.

Each file is identified by the sha256 of its bytes (its partition key is `<stem>-<sha[:12]>`),
so a moved file is still recognised as done (a renamed one is processed again,
under its new name), and a changed one is processed again.
Hashing an archive takes time, so a hash recorded by an earlier run is reused while the
file's size and modification time are unchanged.

A long video is split into time ranges (`chunk_s` seconds). Each range starts `overlap_s`
earlier: those frames are decoded, tracked and smoothed but not reported, so the tracker and
smoother are warm at the range's first frame, and the faces seen there join the range's
tracks to the previous range's (`ferkit.batch.output.join_tracks`).
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path

from ferkit.files import sha256_file
from ferkit.infer.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES

LISTING_SUFFIXES = {".txt", ".lst"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class SourceFile:
    """One input file: its path as found, its content hash and its partition key."""

    path: str
    sha256: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(self.path).stem)
        return f"{stem[:40] or 'file'}-{self.sha256[:12]}"


@dataclass(frozen=True)
class Missing:
    """A source that names nothing readable; `error` says why."""

    path: str
    error: str


@dataclass(frozen=True)
class Task:
    """One unit of work: frames [start, stop) of a file (stop None: to its end), decoded from
    `start - warmup` so tracks are warm at `start`. `part` numbers the ranges of a file."""

    path: str
    key: str
    out: str
    settings: dict
    part: int = 0
    parts: int = 1
    start: int = 0
    stop: int | None = None
    warmup: int = 0
    frames: int | None = None  # frames the task reports, where the header says (progress)


def expand(sources: list[str]) -> list[str | Missing]:
    """File paths named by `sources`, in order, each once; `Missing` for what is not there."""
    found: list[str | Missing] = []
    seen: set[str] = set()

    def add(item: str | Missing) -> None:
        name = item if isinstance(item, str) else item.path
        if name not in seen:
            seen.add(name)
            found.append(item)

    for source in sources:
        path = Path(source)
        if path.is_file() and path.suffix.lower() in LISTING_SUFFIXES:
            for line in _listing(path):
                for item in _one(line, listing=path):
                    add(item)
        else:
            for item in _one(source):
                add(item)
    return found


def _listing(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line if Path(line).is_absolute() else str(path.parent / line))
    return lines


def _one(source: str, listing: Path | None = None) -> list[str | Missing]:
    where = f" (listed in {listing})" if listing else ""
    if any(ch in source for ch in "*?["):
        matches = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
        return list(matches) or [Missing(source, f"no file matches {source}{where}")]
    path = Path(source)
    if path.is_dir():
        files = sorted(
            str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
        )
        return list(files) or [Missing(source, f"no images or videos in folder {source}{where}")]
    if path.is_file():
        return [source]
    return [Missing(source, f"no such file or folder: {source}{where}")]


def identify(path: str, known: dict[str, dict]) -> SourceFile | Missing:
    """The `SourceFile` of `path`, hashing it unless `known` (path → a done record with
    size, mtime_ns and sha256) holds a hash of the same size and modification time."""
    try:
        stat = Path(path).stat()
        record = known.get(str(Path(path).resolve()))
        same = record and (record.get("size"), record.get("mtime_ns")) == (
            stat.st_size, stat.st_mtime_ns
        )  # fmt: skip
        if same:
            digest = record["sha256"]
        else:
            digest = sha256_file(path)
    except OSError as error:
        return Missing(path, f"cannot read {path}: {error.strerror or error}")
    return SourceFile(path, digest, stat.st_size, stat.st_mtime_ns)


def video_header(path: str) -> tuple[int | None, float | None]:
    """(frame count, fps) from a video's header; (None, None) for images or unreadable
    headers (the task finds out what is wrong and reports it)."""
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return None, None
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            return None, None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
    finally:
        capture.release()
    ok_fps = fps if math.isfinite(fps) and 0 < fps < 1000 else None
    return (count if count > 0 else None), ok_fps


def split(
    file: SourceFile, out: str, settings: dict, chunk_s: float | None, overlap_s: float
) -> list[Task]:
    """The tasks of one file: one, or one per `chunk_s` seconds of a long video."""
    count, fps = video_header(file.path)
    whole = Task(file.path, file.key, out, settings, frames=count if count else 1)
    if not chunk_s or not count or not fps:
        return [whole]
    size = max(1, round(chunk_s * fps))
    parts = math.ceil(count / size)
    if parts < 2:
        return [whole]
    warmup = max(1, round(overlap_s * fps))
    tasks = []
    for part in range(parts):
        start = part * size
        stop = None if part == parts - 1 else start + size
        tasks.append(Task(
            file.path, file.key, out, settings, part=part, parts=parts, start=start, stop=stop,
            warmup=min(warmup, start), frames=(stop or count) - start,
        ))  # fmt: skip
    return tasks
