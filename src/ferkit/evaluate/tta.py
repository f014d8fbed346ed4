"""Test-time augmentation: classify several views of each face and average the probabilities.

Modes (every view is a size×size uint8 face, so TTA works with any `Classifier` backend):

    none          the face itself                                         1 view
    flip          the face and its mirror image                           2 views
    tencrop       4 corner crops and the centre crop, each `crop_fraction`
                  of the side and resized back to the input size, plus
                  the mirror of each (torchvision's TenCrop)              10 views
    flip+tencrop  the ten crops plus the uncropped face and its mirror    12 views

Ten-crop is the test-time protocol of the strongest FER-2013 results (e.g. Khaireddin &
Chen 2021) whose networks trained on random crops; here the crops are resized back to the
model's input size, which stays within ferkit's training augmentation (random shifts and
zoom of ±10 %) with the default fraction 0.9.
"""

from __future__ import annotations

import numpy as np

from ferkit.errors import ConfigError
from ferkit.models.temperature import mirror

TTA_MODES: tuple[str, ...] = ("none", "flip", "tencrop", "flip+tencrop")
CROP_FRACTION = 0.9
_CHUNK = 1024  # faces per classifier call: bounds the memory of 12 views of a big split
_CV_CHANNELS = 512  # cv2.resize handles up to 512 channels per call


def check_mode(mode: str) -> str:
    if mode not in TTA_MODES:
        raise ConfigError(f"unknown TTA mode {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def view_count(mode: str) -> int:
    return {"none": 1, "flip": 2, "tencrop": 10, "flip+tencrop": 12}[check_mode(mode)]


def _resize_batch(faces: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 → (N, size, size), resizing up to 512 faces per OpenCV call by
    stacking them as channels of one image."""
    import cv2

    out = np.empty((len(faces), size, size), dtype=np.uint8)
    for start in range(0, len(faces), _CV_CHANNELS):
        chunk = np.ascontiguousarray(faces[start : start + _CV_CHANNELS].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (size, size), interpolation=cv2.INTER_LINEAR)
        out[start : start + _CV_CHANNELS] = resized.reshape(size, size, -1).transpose(2, 0, 1)
    return out


def five_crops(faces: np.ndarray, crop_fraction: float = CROP_FRACTION) -> list[np.ndarray]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops, resized back."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ConfigError(f"crop fraction must be in (0, 1], got {crop_fraction}")
    h, w = faces.shape[1:]
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
    return [_resize_batch(faces[:, y : y + ch, x : x + cw], h) for y, x in corners]


def tta_views(
    faces: np.ndarray, mode: str = "none", crop_fraction: float = CROP_FRACTION
) -> list[np.ndarray]:
    """The views of (N, H, W) uint8 faces for one TTA mode, each (N, H, W) uint8."""
    check_mode(mode)
    faces = np.ascontiguousarray(faces, dtype=np.uint8)
    views = []
    if mode in ("none", "flip", "flip+tencrop"):
        views.append(faces)
        if mode != "none":
            views.append(mirror(faces))
    if mode in ("tencrop", "flip+tencrop"):
        for crop in five_crops(faces, crop_fraction):
            views += [crop, mirror(crop)]
    return views


def predict_tta(
    classifier, faces: np.ndarray, mode: str = "none", crop_fraction: float = CROP_FRACTION
) -> np.ndarray:
    """Mean probabilities over the views of each face: (N, H, W) uint8 → (N, C) float32.

    All views of a chunk of faces go through `classifier.predict_proba` in one call, so
    the backend sees large batches.
    """
    check_mode(mode)
    if len(faces) == 0:
        return np.zeros((0, len(classifier.class_names)), dtype=np.float32)
    out = []
    for start in range(0, len(faces), _CHUNK):
        chunk = faces[start : start + _CHUNK]
        views = tta_views(chunk, mode, crop_fraction)
        probs = classifier.predict_proba(np.concatenate(views))
        out.append(probs.reshape(len(views), len(chunk), -1).mean(axis=0))
    return np.concatenate(out).astype(np.float32)
