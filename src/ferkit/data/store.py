"""The HDF5 data store: one file holding a cleaned FER-2013 (or any 48×48 face set).

Schema (format version 1):
    images     (N, 48, 48) uint8, rows grouped by split (train, val, test) so that a split
               is one contiguous slice and loads with a single read
    labels     (N,) uint8, FER-2013 index order (`ferkit.labels.EMOTIONS`)
    split      (N,) uint8: 0 train, 1 val (PublicTest), 2 test (PrivateTest)
    source_id  (N,) utf-8 strings: where each row came from (file path or csv row)
    clean_report  scalar utf-8 JSON: every removed item with its reason
    ferplus_votes    optional (N, 10) uint8 FER+ votes, `ferkit.data.ferplus.VOTE_COLUMNS`
                     order (neutral, happiness, surprise, sadness, anger, disgust, fear,
                     contempt, unknown, not-a-face); zeros where the image has no votes
    ferplus_matched  optional (N,) bool: the image has votes (the unmatched are kept)
    attrs: format_version, ferkit_version, class_names, split_ranges, counts, mean, std
           (train pixels in [0, 1]), source, source_sha256, clean_summary (JSON),
           ferplus (JSON: votes file, sha256, join, matched/unmatched per split; with votes)

Images are stored uncompressed in large chunks: at 83 MB for all of FER-2013, reading raw
bytes is faster than any decompressor. Writes go to a temporary file that is renamed into
place, so a crash never leaves a half-written store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.errors import DataError
from ferkit.files import atomic_path, refuse_existing
from ferkit.labels import EMOTIONS
from ferkit.preprocess import Preprocessing

FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": 0, "training": 0,
    "val": 1, "valid": 1, "validation": 1, "publictest": 1,
    "test": 2, "privatetest": 2,
}  # fmt: skip


def split_index(split: str | int) -> int:
    """0/1/2 for a split given by name (train, val/PublicTest, test/PrivateTest) or index."""
    if isinstance(split, (int, np.integer)) and 0 <= int(split) < len(SPLITS):
        return int(split)
    key = str(split).lower()
    if key not in SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return SPLIT_ALIASES[key]


@dataclass
class FerPlusVotes:
    """The optional FER+ datasets of a store, row-aligned with the images given to it."""

    votes: np.ndarray  # (N, 10) uint8
    matched: np.ndarray  # (N,) bool
    info: dict


def write_store(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    source_ids: list[str] | None = None,
    *,
    class_names: tuple[str, ...] = EMOTIONS,
    source: str = "",
    source_sha256: str = "",
    clean_report: dict | None = None,
    ferplus: FerPlusVotes | None = None,
    normalization: tuple[float, float] | None = None,
    force: bool = False,
) -> Path:
    """Write a store atomically; rows are reordered so each split is contiguous.

    normalization: (mean, std) to record instead of the training pixels' own, for a copy
    that must normalise exactly as its original did (`ferkit.data.pack`)."""
    import h5py

    from ferkit import __version__

    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.uint8)
    splits = np.asarray(splits, dtype=np.uint8)
    n = len(images)
    if images.ndim != 3 or labels.shape != (n,) or splits.shape != (n,):
        raise DataError(
            f"store arrays disagree: images {images.shape}, labels {labels.shape}, "
            f"split {splits.shape}"
        )
    if n and (labels.max() >= len(class_names) or splits.max() >= len(SPLITS)):
        raise DataError("labels or split values out of range")
    source_ids = list(source_ids) if source_ids is not None else [f"row{i}" for i in range(n)]
    if len(source_ids) != n:
        raise DataError(f"{len(source_ids)} source ids for {n} images")

    order = np.argsort(splits, kind="stable")
    images, labels, splits = images[order], labels[order], splits[order]
    source_ids = [source_ids[i] for i in order]
    if ferplus is not None:
        if ferplus.votes.shape != (n, 10) or ferplus.matched.shape != (n,):
            raise DataError(f"FER+ votes {ferplus.votes.shape} do not fit {n} images")
        ferplus = FerPlusVotes(
            np.asarray(ferplus.votes, np.uint8)[order],
            np.asarray(ferplus.matched, bool)[order],
            ferplus.info,
        )
    bounds = np.searchsorted(splits, np.arange(len(SPLITS) + 1))
    split_ranges = {name: [int(bounds[i]), int(bounds[i + 1])] for i, name in enumerate(SPLITS)}
    counts = {
        name: {cls: int(np.sum(labels[lo:hi] == k)) for k, cls in enumerate(class_names)}
        for name, (lo, hi) in split_ranges.items()
    }
    if normalization is not None:
        mean, std = (float(value) for value in normalization)
    else:
        train = images[slice(*split_ranges["train"])]
        pixels = train if len(train) else images
        mean = float(pixels.mean() / 255.0) if len(pixels) else 0.5
        std = float(pixels.std() / 255.0) if len(pixels) else 0.25
    report = clean_report or {"summary": {}, "removed": [], "findings": {}}

    refuse_existing(path, force)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            chunk_rows = max(1, min(n, 4096))
            f.create_dataset(
                "images", data=images, chunks=(chunk_rows, *images.shape[1:]) if n else None
            )
            f.create_dataset("labels", data=labels)
            f.create_dataset("split", data=splits)
            f.create_dataset("source_id", data=source_ids, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset(
                "clean_report", data=json.dumps(report), dtype=h5py.string_dtype("utf-8")
            )
            if ferplus is not None:
                f.create_dataset("ferplus_votes", data=ferplus.votes)
                f.create_dataset("ferplus_matched", data=ferplus.matched)
                f.attrs["ferplus"] = json.dumps(ferplus.info)
            f.attrs.update(
                format_version=FORMAT_VERSION,
                ferkit_version=__version__,
                class_names=json.dumps(list(class_names)),
                split_ranges=json.dumps(split_ranges),
                counts=json.dumps(counts),
                mean=mean,
                std=std,
                source=str(source),
                source_sha256=source_sha256,
                clean_summary=json.dumps(report.get("summary", {})),
            )
    return Path(path)


class Store:
    """A read-only view of an HDF5 store; arrays are read per split on demand.

    Use as a context manager (`with open_store(path) as store:`), or call `close()`.
    """

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such store (write one with `ferkit data prepare`)")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise DataError(f"{self.path}: not a readable HDF5 store ({error})") from None
        attrs = self._file.attrs
        version = int(attrs.get("format_version", -1))
        if version > FORMAT_VERSION:
            self._file.close()
            raise DataError(
                f"{self.path}: store format version {version} is newer than this ferkit "
                f"reads ({FORMAT_VERSION}); upgrade ferkit or re-run `ferkit data prepare`"
            )
        if version < 1 or "images" not in self._file:
            self._file.close()
            raise DataError(f"{self.path}: not a ferkit store (no format_version/images)")
        self.class_names: tuple[str, ...] = tuple(json.loads(attrs["class_names"]))
        self.split_ranges: dict[str, list[int]] = json.loads(attrs["split_ranges"])
        self.mean = float(attrs["mean"])
        self.std = float(attrs["std"])
        self.source = str(attrs.get("source", ""))
        self.source_sha256 = str(attrs.get("source_sha256", ""))
        self.clean_summary: dict = json.loads(attrs.get("clean_summary", "{}"))

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return int(self._file["labels"].shape[0])

    def _range(self, split: str | int) -> slice:
        return slice(*self.split_ranges[SPLITS[split_index(split)]])

    def split_arrays(self, split: str | int) -> tuple[np.ndarray, np.ndarray]:
        """(images (N, 48, 48) uint8, labels (N,) uint8) of one split, in one read each."""
        rows = self._range(split)
        return self._file["images"][rows], self._file["labels"][rows]

    def source_ids(self, split: str | int) -> list[str]:
        return [s.decode("utf-8") for s in self._file["source_id"][self._range(split)]]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class per split."""
        return json.loads(self._file.attrs["counts"])

    def clean_report(self) -> dict:
        return json.loads(self._file["clean_report"][()])

    @property
    def has_ferplus(self) -> bool:
        return "ferplus_votes" in self._file

    def ferplus_info(self) -> dict:
        """Where the FER+ votes came from and how many images they matched ({} without)."""
        return json.loads(self._file.attrs.get("ferplus", "{}"))

    def ferplus_votes(self, split: str | int) -> tuple[np.ndarray, np.ndarray]:
        """(votes (N, 10) uint8, matched (N,) bool) of one split; a DataError without votes."""
        if not self.has_ferplus:
            raise DataError(
                f"{self.path}: no FER+ votes in this store; prepare it with "
                "`ferkit data prepare SOURCE --ferplus kaggle_votes.csv`"
            )
        rows = self._range(split)
        return self._file["ferplus_votes"][rows], self._file["ferplus_matched"][rows]

    def preprocessing(self) -> Preprocessing:
        """The normalisation a model trained on this store should use."""
        return Preprocessing(size=int(self._file["images"].shape[1]), mean=self.mean, std=self.std)


def open_store(path: str | Path) -> Store:
    """Open an HDF5 store written by `prepare()`/`write_store()` for reading."""
    return Store(path)
