"""What a model's probabilities go through at inference: its temperature and its TTA.

Temperature scaling divides the logits by one scalar T (fitted on val by `ferkit evaluate`,
see `ferkit.evaluate.calibration`) and keeps it in the checkpoint's `metrics["temperature"]`
(and an ONNX export's metadata). `ferkit ship` also records the test-time augmentation it
chose on val (`metrics["tta"]`: "flip" averages each face with its mirror image), so the
shipped accuracy is the one `Recognizer`, `predict` and `serve` deliver. Both live here,
below `infer/`, so a deployed recognizer follows them without carrying the evaluation code.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def as_probs(probs: np.ndarray) -> np.ndarray:
    """float64 rows renormalised to sum to 1 (float32 softmax outputs drift by ~1e-7)."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs / np.clip(probs.sum(axis=1, keepdims=True), EPS, None)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities rescaled as softmax(log p / T); T > 1 softens, T < 1 sharpens."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(as_probs(probs), EPS, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def checkpoint_temperature(metrics: dict | None) -> float | None:
    """The temperature stored in a checkpoint's metrics, or None if it was never fitted."""
    value = (metrics or {}).get("temperature")
    return float(value) if value is not None else None


INFERENCE_TTA = ("none", "flip")  # what a backend applies by itself (ten-crop costs 10×)


def checkpoint_tta(metrics: dict | None) -> str:
    """The test-time augmentation a shipped model is used with ("none" if never chosen)."""
    value = str((metrics or {}).get("tta") or "none")
    return value if value in INFERENCE_TTA else "none"


def mirror(faces):
    """Faces mirrored left to right (the last axis): a contiguous numpy copy, or a torch
    tensor flipped on its device."""
    if isinstance(faces, np.ndarray):
        return np.ascontiguousarray(faces[..., ::-1])
    return faces.flip(-1)


def flip_average(predict, faces):
    """The flip TTA, written once for training's validation, evaluation and every inference
    backend: the mean of `predict` (faces → probabilities) over the faces and their mirror
    images, in one call. numpy faces give float32 numpy, torch tensors stay torch."""
    n = len(faces)
    if isinstance(faces, np.ndarray):
        both = predict(np.concatenate([faces, mirror(faces)]))
        return ((both[:n] + both[n:]) / 2).astype(np.float32)
    import torch

    both = predict(torch.cat([faces, mirror(faces)]))
    return (both[:n] + both[n:]) / 2
