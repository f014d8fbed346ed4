"""The classifier seam: 48×48 uint8 faces in, emotion probabilities out.

The recognition pipeline only needs `predict_proba(faces) -> (N, C)` plus the class names
and the `Preprocessing` the model was trained with. Both backends apply the temperature
stored with the model (fitted on val by `ferkit evaluate`) unless asked for raw
probabilities (`calibrated=False`, which evaluation uses because it fits T itself), and the
test-time augmentation `ferkit ship` chose for it (flip: the face and its mirror averaged)
unless asked not to (`tta=False`, for evaluation, which applies TTA itself). PyTorch and ONNX
Runtime implement the same protocol, so detection, tracking, smoothing and outputs do not
care which one runs; `ferkit.infer.loading.open_classifier` decides which one does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ferkit.errors import ModelError
from ferkit.models.temperature import (
    apply_temperature,
    checkpoint_temperature,
    checkpoint_tta,
    flip_average,
)
from ferkit.preprocess import Preprocessing, normalize

# What `ferkit export` writes and this reader checks: the graph's input name and the
# `format` metadata entry that marks an .onnx file as a ferkit export.
ONNX_FORMAT = "ferkit-onnx"
ONNX_INPUT = "faces"


def onnx_metadata(props, name) -> dict:
    """The ferkit metadata of an exported .onnx file from its metadata properties (strings
    holding JSON), decoded; `ModelError` naming `name` where it is not a ferkit export."""
    if props.get("format") != json.dumps(ONNX_FORMAT):
        raise ModelError(f"{name}: not a ferkit ONNX export; create one with `ferkit export`")
    return {key: json.loads(value) for key, value in props.items()}


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

    Faces are normalised on the model's device and run in chunks of `batch_size`. The
    model runs in channels_last memory, as the trainer runs it: oneDNN's convolutions are
    faster in that layout on the CPU (1.3–1.4× for the shipped ResNet and VGGs, same
    probabilities to float rounding), and it converts the given model in place, as `eval()`
    does.
    """

    def __init__(
        self, model, batch_size: int = 256, calibrated: bool = True, tta: bool = True
    ) -> None:
        import torch

        meta = getattr(model, "ferkit", None)
        if meta is None:
            raise ModelError(
                "model has no `ferkit` metadata (class names, preprocessing); "
                "load it with ferkit.load_model"
            )
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.class_names: tuple[str, ...] = tuple(meta.class_names)
        self.preprocessing: Preprocessing = meta.preprocessing
        self.batch_size = batch_size
        self.temperature = checkpoint_temperature(meta.metrics) if calibrated else None
        self.tta = checkpoint_tta(meta.metrics) if tta else "none"
        first = next(model.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self._torch = torch

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        if faces.ndim != 3:
            raise ValueError(f"expected faces of shape (N, H, W), got {faces.shape}")
        return _as_shipped(self._raw, faces, self.tta, self.temperature)

    def _raw(self, faces: np.ndarray) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(faces), len(self.class_names)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(faces), self.batch_size):
                chunk = torch.from_numpy(faces[start : start + self.batch_size]).to(self.device)
                x = normalize(chunk, self.preprocessing)
                logits = self.model(x.contiguous(memory_format=torch.channels_last))
                probs = torch.softmax(logits.float(), dim=1)
                out[start : start + len(chunk)] = probs.cpu().numpy()
        return out


def _as_shipped(raw, faces: np.ndarray, tta: str, temperature: float | None) -> np.ndarray:
    """A backend's raw probabilities with the model's stored TTA, then its temperature."""
    probs = flip_average(raw, faces) if tta == "flip" else raw(faces)
    return _calibrate(probs, temperature)


def _calibrate(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    if temperature is None or len(probs) == 0:
        return probs
    return apply_temperature(probs, temperature)


_onnx_threads: int | None = None  # set_onnx_threads: the process's choice, as torch's


def set_onnx_threads(threads: int | None) -> None:
    """Intra-op threads of the ONNX Runtime sessions opened from now on in this process
    (None: ONNX Runtime's default, one per physical core). `recognizer.set_threads` sets it
    with torch's and OpenCV's, so a worker told to use one thread does not run two ONNX
    threads per process beside its siblings (2 workers on 2 cores would ask for 4)."""
    global _onnx_threads
    _onnx_threads = threads


class OnnxClassifier:
    """A model exported by `ferkit export` (fp32 or int8 .onnx) run by ONNX Runtime.

    The graph takes uint8 crops and returns probabilities (normalisation and softmax are
    inside it), so this class only batches; class names and preprocessing come from the
    file's metadata. `model` is a path or the serialized bytes; `threads` sets ONNX
    Runtime's intra-op threads (None: the process's `set_onnx_threads`, else ONNX Runtime's
    default, one per physical core). Idle threads
    sleep rather than spin: detection and decoding share the CPU between batches, and on
    a busy 2-core machine spinning threads halved batch-1 throughput (measured).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        device: str = "cpu",
        batch_size: int = 256,
        threads: int | None = None,
        calibrated: bool = True,
        tta: bool = True,
    ) -> None:
        import onnxruntime as ort

        name = "<bytes>" if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise ModelError(f"ONNX model not found: {model}")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = threads if threads is not None else _onnx_threads
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                model if isinstance(model, bytes) else str(model),
                options,
                providers=_onnx_providers(device, ort.get_available_providers()),
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            first = (str(error).strip().splitlines() or [""])[0]
            raise ModelError(f"{name}: ONNX Runtime cannot load it ({first})") from error
        self.metadata = onnx_metadata(self.session.get_modelmeta().custom_metadata_map, name)
        self.class_names: tuple[str, ...] = tuple(self.metadata["class_names"])
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        self.batch_size = batch_size
        stored = checkpoint_temperature(self.metadata.get("metrics"))
        self.temperature = stored if calibrated else None
        self.tta = checkpoint_tta(self.metadata.get("metrics")) if tta else "none"

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        faces = np.ascontiguousarray(faces, dtype=np.uint8)
        size = self.preprocessing.size
        if faces.ndim != 3 or faces.shape[1:] != (size, size):
            raise ValueError(f"expected faces of shape (N, {size}, {size}), got {faces.shape}")
        return _as_shipped(self._raw, faces, self.tta, self.temperature)

    def _raw(self, faces: np.ndarray) -> np.ndarray:
        out = np.zeros((len(faces), len(self.class_names)), dtype=np.float32)
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start : start + self.batch_size]
            out[start : start + len(chunk)] = self.session.run(None, {ONNX_INPUT: chunk})[0]
        return out


def _onnx_providers(device: str, available: list[str]) -> list:
    """ONNX Runtime execution providers for a torch-style device name ("cpu", "cuda:1")."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in available:
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ModelError(
        f"device {device!r} is not available to ONNX Runtime (providers: {', '.join(available)})"
    )


class EnsembleClassifier:
    """Several classifiers as one: the mean of their probabilities, then the ensemble's own
    temperature (fitted on val by `ferkit ship`). Each member runs as it would alone
    (`open_classifier` opens them: its ONNX export on the CPU, its own TTA); all members
    must name the same classes and crop faces the same way (size, margin, framing), since
    one crop feeds them.
    """

    def __init__(self, members: list, temperature: float | None = None) -> None:
        if not members:
            raise ModelError("an ensemble needs at least one member")
        first = members[0]
        self.members = list(members)
        self.class_names = first.class_names
        self.preprocessing = first.preprocessing
        crop = _crop_settings(first.preprocessing)
        for member in members[1:]:
            if member.class_names != first.class_names:
                raise ModelError(
                    f"ensemble members name different classes: {list(first.class_names)} "
                    f"vs {list(member.class_names)}"
                )
            if _crop_settings(member.preprocessing) != crop:
                raise ModelError("ensemble members crop faces differently (size/margin/framing)")
        self.temperature = temperature

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        probs = sum(member.predict_proba(faces) for member in self.members) / len(self.members)
        return _calibrate(probs.astype(np.float32), self.temperature)


def _crop_settings(prep: Preprocessing) -> dict:
    """What decides the crop a model sees; normalisation is each member's own business."""
    settings = prep.to_dict()
    settings.pop("mean", None)
    settings.pop("std", None)
    return settings
