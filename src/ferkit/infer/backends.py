"""The classifier seam: 48×48 uint8 faces in, emotion probabilities out.

The recognition pipeline only needs `predict_proba(faces) -> (N, C)` plus the class names
and the `Preprocessing` the model was trained with. PyTorch runs it here; the ONNX Runtime
backend (export work) implements the same protocol and plugs into `load_classifier`, so
detection, tracking, smoothing and outputs do not care which one runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ferkit.errors import ModelError
from ferkit.preprocess import Preprocessing, normalize


@runtime_checkable
class Classifier(Protocol):
    """Emotion classifier over batches of grayscale face crops."""

    class_names: tuple[str, ...]
    preprocessing: Preprocessing

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, size, size) uint8 crops → (N, len(class_names)) float32 probabilities."""
        ...


class TorchClassifier:
    """A ferkit PyTorch model behind `Classifier`; `model.ferkit` (the checkpoint's
    description that `load_model` attaches) gives class names and preprocessing.

    Faces are normalised on the model's device and run in chunks of `batch_size`.
    """

    def __init__(self, model, batch_size: int = 256) -> None:
        import torch

        meta = getattr(model, "ferkit", None)
        if meta is None:
            raise ModelError(
                "model has no `ferkit` metadata (class names, preprocessing); "
                "load it with ferkit.load_model"
            )
        self.model = model.eval()
        self.class_names: tuple[str, ...] = tuple(meta.class_names)
        self.preprocessing: Preprocessing = meta.preprocessing
        self.batch_size = batch_size
        first = next(model.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self._torch = torch

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        torch = self._torch
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        if faces.ndim != 3:
            raise ValueError(f"expected faces of shape (N, H, W), got {faces.shape}")
        out = np.zeros((len(faces), len(self.class_names)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(faces), self.batch_size):
                chunk = torch.from_numpy(faces[start : start + self.batch_size]).to(self.device)
                logits = self.model(normalize(chunk, self.preprocessing))
                probs = torch.softmax(logits.float(), dim=1)
                out[start : start + len(chunk)] = probs.cpu().numpy()
        return out


def load_classifier(model="default", device: str = "cpu", batch_size: int = 256) -> Classifier:
    """A `Classifier` from a shipped model name, a checkpoint file or run folder, a loaded
    model or a ready classifier."""
    if isinstance(model, Classifier):
        return model
    if isinstance(model, str | Path):
        from ferkit.models.checkpoint import load_model

        model = load_model(model, device=device)
    if hasattr(model, "parameters"):
        return TorchClassifier(model, batch_size=batch_size)
    raise ModelError(f"cannot use {type(model).__name__} as an emotion classifier")
