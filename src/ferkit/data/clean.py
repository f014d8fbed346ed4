"""Cleaning: decode, validate and de-duplicate a stream of raw items, reporting everything.

Steps, in order, each counted and each with an option:
    undecodable   files that do not decode or are truncated          drop | fail
    wrong size    not 48×48 or not single-channel                     convert (warn) | drop
    blank         near-constant images (FER-2013 has some)            drop | keep
    duplicate     exact pixel duplicates inside one split             drop later copies | keep
    leak          exact duplicates across splits (train ↔ val/test)   reported; train copy
                                                                      dropped on request
    near dup      perceptual-hash neighbours (Hamming ≤ k of 64 bits) reported only

Blank and duplicate removal applies to the train split by default (`drop_in="train"`): the
evaluation splits stay the canonical 3,589 + 3,589 images, so accuracies remain comparable
with published FER-2013 results; what they contain is still reported. Nothing is dropped
silently: the report lists every removed item by source id and reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from ferkit.data.readers import RawItem
from ferkit.errors import DataError, ImageTooLarge, SourceError
from ferkit.images import decode_image
from ferkit.preprocess import FER_SIZE, resize_gray, to_gray

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")
REASONS = ("undecodable", "wrong_size", "blank", "duplicate", "leak")


@dataclass
class CleanOptions:
    """What each cleaning step does with what it finds (see module docstring)."""

    drop_undecodable: bool = True
    wrong_size: str = "convert"
    drop_blank: bool = True
    blank_std: float = 1.0
    drop_duplicates: bool = True
    drop_leaks: bool = False
    drop_in: str = "train"
    near_duplicates: bool = True
    near_distance: int = 4

    def __post_init__(self):
        if self.wrong_size not in ("convert", "drop"):
            raise DataError(f"wrong_size must be 'convert' or 'drop', got {self.wrong_size!r}")
        if self.drop_in not in ("train", "all"):
            raise DataError(f"drop_in must be 'train' or 'all', got {self.drop_in!r}")


def decode(item: RawItem) -> np.ndarray:
    """Decoded pixels of an item, as stored (`SourceError` when they cannot be decoded or
    are truncated; `ImageTooLarge` when the header declares more than
    `ferkit.images.MAX_PIXELS`, checked before any pixel is decoded)."""
    if isinstance(item.payload, np.ndarray):
        return item.payload
    if looks_truncated(item.payload):
        raise SourceError(f"{item.source_id}: truncated")
    return decode_image(item.payload, item.source_id, unchanged=True)


def looks_truncated(data: bytes) -> bool:
    """JPEG without its end marker or PNG without IEND: OpenCV may decode those partially."""
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in data[-64:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-16:]
    return False


@dataclass
class Cleaned:
    """The kept images (in source order) and the report of what happened to the rest."""

    images: np.ndarray
    labels: np.ndarray
    splits: list[int | None]
    source_ids: list[str]
    report: dict = field(default_factory=dict)


class Cleaner:
    """Feed items with `add()` (per-image checks), then `finish()` (whole-dataset checks)."""

    def __init__(self, options: CleanOptions | None = None):
        self.options = options or CleanOptions()
        self.read = 0
        self._images: list[np.ndarray] = []
        self._labels: list[int] = []
        self._splits: list[int | None] = []
        self._ids: list[str] = []
        self._removed: list[dict] = []
        self._findings: dict[str, list] = defaultdict(list)

    def add(self, item: RawItem) -> None:
        """Decode one item; drop it if undecodable, convert or drop it if wrongly sized."""
        self.read += 1
        try:
            pixels = decode(item)
        except SourceError as error:
            too_large = isinstance(error, ImageTooLarge)
            if not self.options.drop_undecodable:
                reason = f"{item.source_id}: cannot decode the image (corrupt or truncated)"
                raise DataError(str(error) if too_large else reason) from None
            if too_large:
                log.warning("dropped %s", error)
            entry = self._entry(item.source_id, item.split, "undecodable", detail=str(error))
            self._removed.append(entry)
            return
        if pixels.shape != (FER_SIZE, FER_SIZE) or pixels.dtype != np.uint8:
            shape = list(pixels.shape)
            if self.options.wrong_size == "drop":
                self._removed.append(
                    self._entry(item.source_id, item.split, "wrong_size", shape=shape)
                )
                return
            self._findings["converted"].append({"source_id": item.source_id, "shape": shape})
            pixels = resize_gray(to_gray(pixels), FER_SIZE)
        self._images.append(pixels)
        self._labels.append(item.label)
        self._splits.append(item.split)
        self._ids.append(item.source_id)

    def finish(self) -> Cleaned:
        """Blank images, exact duplicates, cross-split leaks and near-duplicates."""
        if self._findings["converted"]:
            n = len(self._findings["converted"])
            log.warning("converted %d images that were not 48×48 grayscale", n)
        images = np.stack(self._images) if self._images else np.zeros((0, 48, 48), np.uint8)
        keep = np.ones(len(images), dtype=bool)
        self._blank(images, keep)
        self._exact_duplicates(images, keep)
        if self.options.near_duplicates:
            self._near_duplicates(images, keep)
        counts = defaultdict(int)
        for entry in self._removed:
            counts[entry["reason"]] += 1
        kinds = ("converted", "blank_kept", "duplicates_kept", "leaks", "near_duplicates")
        findings = {kind: self._findings.get(kind, []) for kind in kinds}
        near = findings["near_duplicates"]
        report = {
            "options": asdict(self.options),
            "summary": {
                "read": self.read,
                "kept": int(keep.sum()),
                "removed": {reason: counts.get(reason, 0) for reason in REASONS},
                "converted": len(findings["converted"]),
                "blank_kept": len(findings["blank_kept"]),
                "duplicates_kept": len(findings["duplicates_kept"]),
                "leaks_found": len(findings["leaks"]),
                "near_duplicate_pairs": len(near),
                "near_duplicate_pairs_cross_split": sum(p["cross_split"] for p in near),
            },
            "removed": self._removed,
            "findings": findings,
        }
        return Cleaned(
            images=images[keep],
            labels=np.asarray(self._labels, dtype=np.uint8)[keep],
            splits=[s for s, k in zip(self._splits, keep) if k],
            source_ids=[i for i, k in zip(self._ids, keep) if k],
            report=report,
        )

    def _entry(self, source_id: str, split: int | None, reason: str, **extra) -> dict:
        name = SPLIT_NAMES[split] if split is not None else "unassigned"
        return {"source_id": source_id, "split": name, "reason": reason, **extra}

    def _may_drop(self, i: int) -> bool:
        """Removal steps touch train (and unassigned) rows unless drop_in='all'."""
        return self.options.drop_in == "all" or self._splits[i] in (0, None)

    def _blank(self, images: np.ndarray, keep: np.ndarray) -> None:
        flat = images.reshape(len(images), FER_SIZE * FER_SIZE).astype(np.float32)
        for i in np.flatnonzero(flat.std(axis=1) < self.options.blank_std):
            entry = self._entry(self._ids[i], self._splits[i], "blank", value=int(flat[i].mean()))
            if self.options.drop_blank and self._may_drop(i):
                keep[i] = False
                self._removed.append(entry)
            else:
                self._findings["blank_kept"].append(entry)

    def _exact_duplicates(self, images: np.ndarray, keep: np.ndarray) -> None:
        """Drop later copies inside a split; report (and optionally drop) cross-split copies."""
        groups: dict[bytes, list[int]] = defaultdict(list)
        for i in np.flatnonzero(keep):
            groups[hashlib.blake2b(images[i].tobytes(), digest_size=16).digest()].append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            first_in_split: dict[int | None, int] = {}
            for i in members:
                split = self._splits[i]
                if split not in first_in_split:
                    first_in_split[split] = i
                    continue
                j = first_in_split[split]
                entry = self._entry(self._ids[i], split, "duplicate", duplicate_of=self._ids[j],
                                    same_label=self._labels[i] == self._labels[j])  # fmt: skip
                if self.options.drop_duplicates and self._may_drop(i):
                    keep[i] = False
                    self._removed.append(entry)
                else:
                    self._findings["duplicates_kept"].append(entry)
            self._leaks(list(first_in_split.values()), keep)

    def _leaks(self, firsts: list[int], keep: np.ndarray) -> None:
        """One image in several splits: report each pair; drop the train copy on request."""
        for a in range(len(firsts)):
            for b in range(a + 1, len(firsts)):
                i, j = sorted((firsts[a], firsts[b]), key=lambda k: self._splits[k] or 0)
                self._findings["leaks"].append({
                    "a": self._ids[i], "a_split": self._entry("", self._splits[i], "")["split"],
                    "b": self._ids[j], "b_split": self._entry("", self._splits[j], "")["split"],
                    "same_label": self._labels[i] == self._labels[j],
                })  # fmt: skip
                if self.options.drop_leaks and self._splits[i] in (0, None) and keep[i]:
                    keep[i] = False
                    self._removed.append(
                        self._entry(self._ids[i], self._splits[i], "leak", copy_in=self._ids[j])
                    )

    def _near_duplicates(self, images: np.ndarray, keep: np.ndarray) -> None:
        """Pairs of kept images whose perceptual hashes differ in ≤ near_distance bits."""
        index = np.flatnonzero(keep)
        if len(index) < 2:
            return
        hashes = perceptual_hash(images[index])
        for a, b, distance in hamming_neighbours(hashes, self.options.near_distance):
            i, j = int(index[a]), int(index[b])
            if np.array_equal(images[i], images[j]):
                continue  # exact copies in different splits are leaks, reported above
            self._findings["near_duplicates"].append({
                "a": self._ids[i], "b": self._ids[j], "distance": distance,
                "cross_split": self._splits[i] != self._splits[j],
            })  # fmt: skip


def perceptual_hash(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hashes (pHash) of (N, H, W) uint8 images, as uint64.

    The 8×8 lowest 2-D DCT frequencies of each image are compared with their median: the
    hash survives re-encoding, small brightness shifts and mild blurs. Two batched matrix
    products replace a per-image resize + DCT.
    """
    h, w = images.shape[1:]
    rows, cols = dct_basis(h), dct_basis(w)
    coeffs = rows @ images.astype(np.float32) @ cols.T
    flat = coeffs.reshape(len(images), 64)
    median = np.median(flat[:, 1:], axis=1, keepdims=True)
    bits = (flat > median).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def dct_basis(n: int, k: int = 8) -> np.ndarray:
    """The first k DCT-II basis vectors of length n, as rows (k, n)."""
    grid = np.pi * (2 * np.arange(n)[None, :] + 1) * np.arange(k)[:, None] / (2 * n)
    return np.cos(grid).astype(np.float32)


def hamming_neighbours(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """All pairs (a < b) of 64-bit hashes within `max_distance` bits.

    Pigeonhole over max_distance+1 bands: two hashes that close agree exactly on at least
    one band, so only pairs sharing a band value are compared (not all N² pairs). Pairs
    inside a band's equal-value runs are enumerated by offset, vectorised.
    """
    n_bands = max_distance + 1
    edges = np.linspace(0, 64, n_bands + 1).astype(int)
    found = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        band = (hashes >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(band, kind="stable")
        sorted_band = band[order]
        offset = 1
        while offset < len(order):
            same = np.flatnonzero(sorted_band[offset:] == sorted_band[:-offset])
            if len(same) == 0:
                break
            a, b = order[same], order[same + offset]
            found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
            offset += 1
    if not found:
        return []
    pairs = np.unique(np.concatenate(found), axis=0)
    xor = hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]
    distance = np.unpackbits(xor.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
    close = distance <= max_distance
    return [(int(a), int(b), int(d)) for (a, b), d in zip(pairs[close], distance[close])]
