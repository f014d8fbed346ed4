"""Scene cuts: where a video jumps to another shot, so tracks must not continue across it.

An IoU tracker follows boxes, not people: after a hard cut, a face at about the same place
in the next shot would continue the previous person's track, and its summary would mix the
two. A cut changes the whole frame at once, which camera noise, exposure changes and a
moving face do not, so the test is the distance between consecutive frames' gray-level
histograms, taken per cell of a 3×3 grid (a cut to a shot with a similar overall
brightness still changes where things are) and averaged: half the L1 distance of
normalised histograms, 0 for identical frames, 1 for frames that share no gray level in
any cell. Each frame's gray levels are first standardised (mean 0, std 1 over the frame):
an exposure or gain change moves every level at once and would otherwise move whole cells
to other bins. On synthetic shots (tests/test_infer_scenecut.py) frames within a shot,
with ±8 % exposure jumps, noise and a moving face, stay below 0.14; cuts score 0.59–0.92.
"""

from __future__ import annotations

import numpy as np

_GRID = 3
_BINS = 16
_SPAN = 2.5  # standardised gray levels from -2.5 to 2.5 fill the bins (the rest: the ends)
_THUMB = (96, 72)  # frames are compared as small thumbnails: cheap, and blind to noise


def frame_signature(image: np.ndarray) -> np.ndarray:
    """(cells, bins) normalised histograms of a BGR or gray frame's standardised levels."""
    import cv2

    from ferkit.preprocess import to_gray

    thumb = cv2.resize(to_gray(image), _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
    levels = (thumb - thumb.mean()) / max(float(thumb.std()), 1.0)
    bins = np.clip(((levels + _SPAN) / (2 * _SPAN) * _BINS).astype(int), 0, _BINS - 1)
    rows = np.array_split(np.arange(_THUMB[1]), _GRID)
    cols = np.array_split(np.arange(_THUMB[0]), _GRID)
    hists = [
        np.bincount(bins[r[0] : r[-1] + 1, c[0] : c[-1] + 1].ravel(), minlength=_BINS)
        for r in rows
        for c in cols
    ]
    hists = np.asarray(hists, dtype=np.float64)
    return hists / hists.sum(axis=1, keepdims=True)


def cut_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance in [0, 1] between two frame signatures (mean over cells)."""
    return float(0.5 * np.abs(a - b).sum(axis=1).mean())


class SceneCuts:
    """Stateful cut detector for one stream: `is_cut(frame)` is True on the first frame of
    a new shot. `threshold` 0 disables it (every call answers False)."""

    def __init__(self, threshold: float = 0.4) -> None:
        self.threshold = threshold
        self._previous: np.ndarray | None = None

    def is_cut(self, image: np.ndarray) -> bool:
        if not self.threshold:
            return False
        signature = frame_signature(image)
        previous, self._previous = self._previous, signature
        return previous is not None and cut_distance(previous, signature) > self.threshold
