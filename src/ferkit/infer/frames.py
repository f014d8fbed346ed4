"""`load_source()`: any input → frames, with one contract (the ultralytics habit).

An image file, a folder or glob of images, an in-memory array, a video file, a camera
index, a stream URL (rtsp/http) or the web page of a video all become a `Source`: an
iterable of `Frame(index, time_s, image, name)` with BGR uint8 images, plus `fps`,
`frame_count` (when known), `is_video` and `failures` (files of a folder that could not be
read — the rest is still processed). Anything that cannot be opened at all raises
`SourceError` naming it.
"""

from __future__ import annotations

import glob
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.errors import ImageTooLarge, SourceError
from ferkit.images import decode_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtmp://", "udp://", "tcp://")
DEFAULT_FPS = 30.0
MAX_DOWNLOAD_BYTES = 256 * 2**20  # an image URL's body; no photo is this large


@dataclass
class Frame:
    """One image to recognise: its position in the source, time in seconds, pixels, name."""

    index: int
    time_s: float | None
    image: np.ndarray
    name: str


@dataclass
class Source:
    """Frames of one input; iterate once. `failures` lists (name, reason) of skipped files."""

    name: str
    is_video: bool
    fps: float | None = None
    frame_count: int | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    _frames: Iterator[Frame] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[Frame]:
        if self._frames is None:
            raise SourceError(f"{self.name}: frames were already consumed")
        frames, self._frames = self._frames, None
        return frames


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to BGR uint8; `SourceError` naming the file if that fails, and
    `ImageTooLarge` if its header declares more than `ferkit.images.MAX_PIXELS`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"cannot read image {path}: {error.strerror or error}") from error
    return _decoded(data, str(path), f"cannot decode image {path}")


def _decoded(data: bytes, name: str, failure: str) -> np.ndarray:
    """`ferkit.images.decode_image`, with `failure` as the message of an undecodable image
    (too large keeps its own message, which names the limit)."""
    try:
        return decode_image(data, name)
    except ImageTooLarge:
        raise
    except SourceError:
        raise SourceError(f"{failure}: not a supported image or corrupt") from None


def load_source(source, camera: int | None = None, download_dir: str | Path | None = None):
    """Turn `source` (path, glob, URL, camera index, ndarray) into a `Source`.

    `camera` opens that webcam index instead of `source`. Web pages of videos (http(s) URLs
    that are not a direct media file) are downloaded with yt-dlp (extra `video`) into
    `download_dir` (a temporary folder by default) and read from there.
    """
    if camera is not None:
        return _camera(camera)
    if isinstance(source, np.ndarray):
        return _single(source, "array")
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return _camera(int(source))
    text = str(source)
    if text.startswith(STREAM_SCHEMES):
        return _video(text, live=True)
    if text.startswith(("http://", "https://")):
        suffix = Path(text.split("?")[0]).suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return _video(text, live=False)
        if suffix in IMAGE_SUFFIXES:
            return _single(_fetch_image(text), text)
        return _video(download_video(text, download_dir), live=False)
    path = Path(text)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True))
        return _folder(files, text)
    if path.is_dir():
        return _folder(sorted(p for p in path.rglob("*") if p.is_file()), text)
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video(str(path), live=False)
    return _single(read_image(path), str(path))


def _single(image: np.ndarray, name: str) -> Source:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise SourceError(f"{name}: expected an image array (H, W) or (H, W, 3)")
    return Source(name, is_video=False, frame_count=1, _frames=iter([Frame(0, None, image, name)]))


def _folder(files: list[Path], name: str) -> Source:
    """Images of a folder or glob, read lazily; unreadable ones are skipped and listed."""
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {name}")
    source = Source(name=name, is_video=False, frame_count=len(images))

    def frames() -> Iterator[Frame]:
        index = 0
        for path in images:
            try:
                image = read_image(path)
            except SourceError as error:
                log.warning("skipping %s", error)
                source.failures.append((str(path), str(error)))
                continue
            yield Frame(index, None, image, str(path))
            index += 1

    source._frames = frames()
    return source


def _camera(index: int) -> Source:
    import cv2

    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise SourceError(f"camera {index} could not be opened (missing, busy or no permission)")
    return _from_capture(capture, f"camera {index}", live=True)


def _video(target: str, live: bool) -> Source:
    import cv2

    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise SourceError(f"cannot open video {target}: unreadable, unsupported or unreachable")
    return _from_capture(capture, target, live=live)


def _from_capture(capture, name: str, live: bool) -> Source:
    """Frames from an opened cv2.VideoCapture; live sources are timed by the wall clock."""
    import cv2

    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise SourceError(f"{name}: no frame could be read (empty, corrupt or unsupported codec)")
    source = Source(
        name, is_video=True, fps=fps, frame_count=count if count > 0 and not live else None
    )

    def frames() -> Iterator[Frame]:
        start, image, index = time.monotonic(), first, 0
        try:
            while image is not None:
                seconds = time.monotonic() - start if live else index / fps
                yield Frame(index, seconds, image, name)
                index += 1
                ok, image = capture.read()
                image = image if ok else None
        finally:
            capture.release()
        if source.frame_count and index < source.frame_count - 1:
            reason = f"stopped at frame {index} of {count}: the rest could not be decoded"
            log.warning("%s: %s (truncated or corrupt file)", name, reason)
            source.failures.append((name, reason))

    source._frames = frames()
    return source


def _fetch_image(url: str) -> np.ndarray:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (user's URL)
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except OSError as error:
        raise SourceError(f"cannot download image {url}: {error}") from error
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise SourceError(f"{url}: image larger than the {MAX_DOWNLOAD_BYTES:,}-byte limit")
    return _decoded(data, url, f"cannot decode image downloaded from {url}")


def download_video(url: str, folder: str | Path | None = None) -> str:
    """Download the video on a web page with yt-dlp; the local file's path."""
    try:
        import yt_dlp
    except ImportError as error:
        raise SourceError(
            f"{url} is a web page, not a media file: install the video extra "
            "(pip install 'ferkit[video]') to download it with yt-dlp"
        ) from error
    folder = Path(folder or tempfile.mkdtemp(prefix="ferkit-video-"))
    folder.mkdir(parents=True, exist_ok=True)
    options = {
        "outtmpl": str(folder / "%(id)s.%(ext)s"),
        "format": "best[ext=mp4][height<=720]/best[height<=720]/best",
        "quiet": True,
        "noprogress": True,
        "noplaylist": True,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            path = ydl.prepare_filename(info)
    except Exception as error:  # yt-dlp raises its own DownloadError and network errors
        raise SourceError(f"cannot download the video at {url}: {error}") from error
    return path
