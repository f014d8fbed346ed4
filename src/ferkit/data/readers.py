"""Read FER-2013 in any of its releases as a stream of raw items, without unpacking to disk.

Releases understood:
    fer2013.csv                      columns emotion,pixels[,Usage]; emotion in FER index order
    image folders (Kaggle layout)    <split>/<class>/<Prefix_N>.jpg; the file-name prefix
                                     (Training_/PublicTest_/PrivateTest_) gives the split,
                                     else the split folder does (train/val/test)
    .tar(.gz|.bz2|.xz) / .zip        an archive of either, read member by member

Items carry encoded bytes (image files) or decoded pixels (CSV rows); decoding and quality
checks belong to `clean.py`. Structural errors (a CSV without its columns, a malformed
pixel string, a label out of range, an unknown class folder) raise `DataError` naming
the file and row, because no cleaning can recover a row whose meaning is unknown.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, canonical_name

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".pnm", ".tif", ".tiff", ".webp", ".gif"}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
PREFIX_SPLITS = {"training": 0, "publictest": 1, "privatetest": 2}
FOLDER_SPLITS = {
    "train": 0, "training": 0,
    "val": 1, "valid": 1, "validation": 1, "publictest": 1,
    "test": 2, "privatetest": 2,
}  # fmt: skip
USAGE_SPLITS = {"training": 0, "publictest": 1, "privatetest": 2}
CSV_PIXELS = 48 * 48
MAX_CSV_LINE = 2**20  # bytes; a FER-2013 row is ~9 kB
# bytes of one image file or archive member; FER-2013's are ~2 kB, and a 64 MiB cap keeps
# a 1 GB member of a 1 MB zip (a zip bomb) out of memory
MAX_MEMBER_BYTES = 64 * 2**20
FER2013_ENV = "FERKIT_FER2013"


@dataclass
class RawItem:
    """One image as found in the source, before decoding and cleaning.

    split is None when the source does not say (then a val split is carved from train).
    payload is encoded image bytes, or a (48, 48) uint8 array for CSV rows.
    """

    source_id: str
    split: int | None
    label: int
    payload: bytes | np.ndarray


class HashingReader(io.RawIOBase):
    """A read-only file wrapper that hashes every byte read and reports progress."""

    def __init__(self, raw, on_read=None):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            if self._on_read:
                self._on_read(n)
        return n or 0


def locate_fer2013() -> Path:
    """Where the FER-2013 archive is expected: $FERKIT_FER2013, else the shared default.

    The default is `../shared/data/fer2013/fer2013.tar.gz` relative to the repository
    root; tests and benchmarks call this and skip when the file is absent.
    """
    if os.environ.get(FER2013_ENV):
        return Path(os.environ[FER2013_ENV])
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "data" / "fer2013" / "fer2013.tar.gz"


def source_kind(path: Path) -> str:
    """'csv', 'folder', 'tar' or 'zip'; anything else is refused with the reason."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return "folder"
    name = path.name.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise DataError(
        f"{path}: unknown source format; expected a .csv, an image folder, or a "
        f".tar.gz/.tgz/.tar/.zip archive"
    )


def text_lines(stream, name: str) -> Iterator[str]:
    """The lines of a binary CSV stream as text, each read with a length cap: a file that is
    not UTF-8, or a "line" of a gigabyte (a bomb, or not a CSV at all), is a `DataError`
    naming the file and row instead of a traceback or an exhausted memory."""
    for row_number in itertools.count(1):
        line = stream.readline(MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > MAX_CSV_LINE:
            raise DataError(
                f"{name} row {row_number}: line longer than the {MAX_CSV_LINE:,}-byte limit "
                f"(a FER-2013 row is about 9 kB)"
            )
        try:
            yield line.decode("utf-8-sig" if row_number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{name} row {row_number}: not UTF-8 text (byte {line[error.start]:#04x} at "
                f"column {error.start + 1}); save the CSV as UTF-8"
            ) from None


def iter_csv(lines, name: str) -> Iterator[RawItem]:
    """Rows of a FER-2013 CSV (text lines) as items; row numbers count the header as 1."""
    try:
        yield from _iter_csv(csv.reader(lines), name)
    except csv.Error as error:  # e.g. a field over csv.field_size_limit(), a stray NUL
        raise DataError(f"{name}: malformed CSV ({error})") from None


def _iter_csv(reader, name: str) -> Iterator[RawItem]:
    header = next(reader, None)
    if header is None:
        raise DataError(f"{name}: empty CSV (no header)")
    columns = [c.strip().lower() for c in header]
    missing = [c for c in ("emotion", "pixels") if c not in columns]
    if missing:
        raise DataError(
            f"{name}: CSV is missing column(s) {', '.join(missing)}; found {', '.join(header)} "
            f"(expected emotion,pixels,Usage)"
        )
    i_label, i_pixels = columns.index("emotion"), columns.index("pixels")
    i_usage = columns.index("usage") if "usage" in columns else None
    for row_number, row in enumerate(reader, start=2):
        if not row:
            continue
        where = f"{name} row {row_number}"
        if len(row) != len(columns):
            raise DataError(f"{where}: {len(row)} fields, expected {len(columns)}")
        try:
            label = int(row[i_label])
        except ValueError:
            raise DataError(f"{where}: emotion {row[i_label]!r} is not an integer") from None
        if not 0 <= label < len(EMOTIONS):
            raise DataError(f"{where}: emotion {label} is outside 0–{len(EMOTIONS) - 1}")
        split = None
        if i_usage is not None:
            usage = row[i_usage].strip().lower()
            if usage not in USAGE_SPLITS:
                raise DataError(
                    f"{where}: Usage {row[i_usage]!r} is not Training, PublicTest or PrivateTest"
                )
            split = USAGE_SPLITS[usage]
        yield RawItem(f"{name}:{row_number}", split, label, parse_pixels(row[i_pixels], where))


def parse_pixels(text: str, where: str) -> np.ndarray:
    """A space-separated string of 2304 values in 0..255 → (48, 48) uint8.

    `np.fromstring` parses in C (5× faster than converting split tokens); its complaint
    about a stray token becomes an error, and the slow path then names the token.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            bad = next((t for t in text.split() if not t.lstrip("-").isdigit()), text[:20])
            raise DataError(f"{where}: pixel value {bad!r} is not an integer") from None
    if len(values) != CSV_PIXELS:
        raise DataError(f"{where}: {len(values)} pixel values, expected {CSV_PIXELS} (48×48)")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must lie in 0..255")
    return values.astype(np.uint8).reshape(48, 48)


def item_for_image_path(
    relpath: str, payload: bytes, class_map: Mapping[str, str] | None
) -> RawItem | None:
    """An item for an image file at `relpath` (posix, inside the source), or None to skip.

    The class is the parent folder; the split comes from the file-name prefix, else from
    the nearest ancestor folder named like a split, else is left to be decided.
    """
    path = PurePosixPath(relpath)
    if path.suffix.lower() not in IMAGE_SUFFIXES or is_hidden(path):
        return None
    if len(path.parts) < 2:
        raise DataError(
            f"{relpath}: image outside a class folder; expected <split>/<class>/<file> "
            f"with class one of {', '.join(EMOTIONS)}"
        )
    folder = path.parent.name
    emotion = canonical_name(folder, class_map)
    if emotion is None:
        raise DataError(
            f"{relpath}: unknown class folder {folder!r}; expected one of "
            f"{', '.join(EMOTIONS)} (or a common synonym); "
            f"rename with --class-map {folder}=<emotion>"
        )
    prefix = path.name.split("_", 1)[0].lower()
    split = PREFIX_SPLITS.get(prefix)
    if split is None:
        for part in reversed(path.parts[:-2]):
            if part.lower() in FOLDER_SPLITS:
                split = FOLDER_SPLITS[part.lower()]
                break
    return RawItem(relpath, split, EMOTIONS.index(emotion), payload)


def read_capped(stream, where: str, declared: int) -> bytes:
    """All the bytes of one image file or member, refusing (DataError naming it and the
    limit) one declared, or found while reading, to be over `MAX_MEMBER_BYTES`."""
    size = declared
    if size <= MAX_MEMBER_BYTES:
        data = stream.read(MAX_MEMBER_BYTES + 1)
        size = len(data)
    if size > MAX_MEMBER_BYTES:
        raise DataError(
            f"{where}: {size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte limit for one image "
            f"(FER-2013 images are ~2 kB; a huge member is a zip bomb or not a face image)"
        )
    return data


def is_hidden(path: PurePosixPath) -> bool:
    """Hidden files and macOS archive debris (__MACOSX, ._name) are not images."""
    return any(p.startswith(".") or p == "__MACOSX" for p in path.parts)


class SourceReader:
    """Iterates a source's items and afterwards knows its sha256 and what it skipped."""

    def __init__(self, path: str | Path, class_map: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.kind = source_kind(self.path)
        self.class_map = dict(class_map or {})
        self.sha256 = ""
        self.skipped: list[str] = []
        self.size_bytes = self._size()

    def _size(self) -> int:
        if self.kind != "folder":
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def items(self, on_read=None) -> Iterator[RawItem]:
        """Stream the items; `on_read(n_bytes)` is called as bytes are read (progress)."""
        if self.kind == "folder":
            yield from self._folder_items(on_read)
            return
        if self.kind == "zip":  # zipfile seeks, so hash the file in a pass of its own
            with open(self.path, "rb") as raw:
                self.sha256 = hashlib.file_digest(raw, "sha256").hexdigest()
            yield from self._zip_items(on_read)
            return
        with open(self.path, "rb") as raw:
            reader = HashingReader(raw, on_read)
            stream = io.BufferedReader(reader, buffer_size=1 << 20)
            if self.kind == "csv":
                yield from iter_csv(text_lines(stream, self.path.name), self.path.name)
            else:
                yield from self._tar_items(stream)
            stream.read()  # hash to the end, whatever the reader left unread
            self.sha256 = reader.sha256.hexdigest()

    def _handle_member(self, name: str, size: int, read) -> Iterator[RawItem]:
        """Items of one archive member of declared `size` bytes; `read()` opens it."""
        where = f"{self.path.name}:{name}"
        if name.lower().endswith(".csv") and not is_hidden(PurePosixPath(name)):
            with read() as member:  # archive members are not seekable: decode line by line
                yield from iter_csv(text_lines(member, where), where)
            return
        item = item_for_image_path(name, b"", self.class_map)
        if item is None:
            self.skipped.append(name)
            return
        with read() as member:
            item.payload = read_capped(member, where, size)
        yield item

    def _tar_items(self, stream) -> Iterator[RawItem]:
        try:
            with tarfile.open(fileobj=stream, mode="r|*") as archive:
                for member in archive:
                    if member.isfile():
                        yield from self._handle_member(
                            member.name, member.size, lambda m=member: archive.extractfile(m)
                        )
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataError(f"{self.path}: unreadable archive ({error})") from None

    def _zip_items(self, on_read) -> Iterator[RawItem]:
        try:
            with zipfile.ZipFile(self.path) as archive:
                for info in archive.infolist():
                    if on_read:
                        on_read(info.compress_size)
                    if not info.is_dir():
                        yield from self._handle_member(
                            info.filename, info.file_size, lambda i=info: archive.open(i)
                        )
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"{self.path}: unreadable zip archive ({error})") from None

    def _folder_items(self, on_read) -> Iterator[RawItem]:
        digest = hashlib.sha256()
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(self.path).as_posix()
            if rel.lower().endswith(".csv") and not is_hidden(PurePosixPath(rel)):
                digest.update(rel.encode())
                with open(file, "rb") as raw:
                    for chunk in iter(lambda: raw.read(1 << 20), b""):
                        digest.update(chunk)
                    raw.seek(0)
                    yield from iter_csv(text_lines(raw, rel), rel)
                continue
            item = item_for_image_path(rel, b"", self.class_map)
            if item is None:
                self.skipped.append(rel)
                continue
            with open(file, "rb") as raw:
                item.payload = read_capped(raw, rel, file.stat().st_size)
            digest.update(rel.encode() + item.payload)
            if on_read:
                on_read(len(item.payload))
            yield item
        self.sha256 = digest.hexdigest()
