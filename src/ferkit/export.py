"""Export a ferkit model to ONNX (fp32 or int8) and prove the file computes what PyTorch does.

The exported graph takes exactly what the recognition pipeline has: uint8 face crops
(N, 48, 48) with a dynamic batch axis, input "faces". Normalisation (`ferkit.preprocess.
normalize`, with the checkpoint's mean/std) and the softmax are inside the graph, so the
output "probs" (N, C) are class probabilities and a caller needs neither ferkit nor the
training statistics. Everything else a user needs travels in the file's metadata_props
(`read_metadata`): class names, input size, preprocessing, the source checkpoint's sha256,
the quantisation and the parity measured at export.

Convolution channel counts are zero-padded to a multiple of 8 before tracing where the
model is a plain chain (`ferkit.channel_padding`): exact, and the shipped `fast` (21/42/
84/169 channels) runs 1.3–1.5× faster in ONNX Runtime int8 with it.

int8 (`ferkit.quantize`) uses ONNX Runtime's static quantisation (QDQ, per-channel
weights) calibrated on training images; dynamic quantisation (weights only, no calibration
data) is the fallback where no training images are at hand. Every export is checked before
it is written: the ONNX checker, then the ONNX Runtime classifier against the PyTorch one
on real faces (the test split of an HDF5 store, or random pixels if none is given): fp32
must match within `tolerance`, int8 must agree on the top class for at least
`min_agreement` of the faces.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferkit.channel_padding import MULTIPLE, pad_channels
from ferkit.errors import ConfigError, ModelError
from ferkit.files import atomic_path, sha256_file
from ferkit.infer.backends import ONNX_FORMAT as FORMAT
from ferkit.infer.backends import ONNX_INPUT as INPUT_NAME
from ferkit.infer.backends import onnx_metadata
from ferkit.infer.loading import INT8_SUFFIX, ONNX_SUFFIX
from ferkit.paths import DEFAULT_STORE
from ferkit.preprocess import Preprocessing, normalize
from ferkit.quantize import int8_method, quantize_int8

log = logging.getLogger(__name__)

OUTPUT_NAME = "probs"
DEFAULT_OPSET = 17


class _Exportable(nn.Module):
    """uint8 faces (N, H, W) → probabilities (N, C): the model with `normalize` before it
    and a softmax after it, so the graph holds the whole face→probabilities transform."""

    def __init__(self, model: nn.Module, prep: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.prep = prep

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(normalize(faces, self.prep)), dim=1)


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how well it matches PyTorch."""

    path: Path
    quantization: str  # "none", "static" or "dynamic"
    opset: int
    size_bytes: int
    source_sha256: str | None
    check_inputs: str  # where the parity faces came from
    check_count: int
    max_abs_diff: float  # on probabilities, ONNX Runtime vs PyTorch
    agreement: float  # fraction of faces with the same top class
    accuracy_torch: float | None = None  # on the check faces, where they have labels
    accuracy_onnx: float | None = None
    calibration: str | None = None  # int8 static: which images calibrated it
    channels_padded_to: int | None = None  # conv channels zero-padded (`ferkit.channel_padding`)

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}

    def summary(self) -> str:
        lines = [
            f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}, "
            f"quantization: {self.quantization})",
            f"parity vs PyTorch on {self.check_count} faces ({self.check_inputs}): "
            f"max |Δp| {self.max_abs_diff:.2e}, same top class {self.agreement:.2%}",
        ]
        if self.accuracy_torch is not None and self.accuracy_onnx is not None:
            delta = 100 * (self.accuracy_onnx - self.accuracy_torch)
            lines.append(
                f"accuracy on those faces: PyTorch {self.accuracy_torch:.2%}, "
                f"ONNX {self.accuracy_onnx:.2%} ({delta:+.2f} points)"
            )
        if self.channels_padded_to:
            lines.append(f"conv channels zero-padded to multiples of {self.channels_padded_to}")
        if self.calibration:
            lines.append(f"calibrated on {self.calibration}")
        return "\n".join(lines)


def read_metadata(path: str | Path) -> dict:
    """The ferkit metadata of an exported .onnx file, JSON values decoded."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return onnx_metadata({p.key: p.value for p in proto.metadata_props}, path)


def default_output(source: Path, int8: bool) -> Path:
    """`best.pt` → `best.onnx` (fp32) or `best.int8.onnx`, beside the checkpoint."""
    return source.with_name(source.stem + (INT8_SUFFIX if int8 else ONNX_SUFFIX))


def _default_store(model: nn.Module) -> Path | None:
    """The HDF5 store the model was trained on (its config), else data/fer2013.h5."""
    config = model.ferkit.config or {}
    trained_on = (config.get("data") or {}).get("path") if isinstance(config, dict) else None
    for candidate in (trained_on, DEFAULT_STORE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _sample(images: np.ndarray, labels: np.ndarray | None, count: int | None):
    """`count` faces spread evenly over the split (splits are grouped by class), or all."""
    if count is None or count >= len(images):
        return images, labels
    index = np.linspace(0, len(images) - 1, count).round().astype(int)
    return images[index], None if labels is None else labels[index]


def _to_proto(net: nn.Module, prep: Preprocessing, opset: int, arch: str):
    """Trace `_Exportable` around `net` (float32, CPU, eval mode) into a ModelProto with a
    dynamic batch axis.

    This uses torch's TorchScript exporter (`dynamo=False`). Both exporters of torch 2.13
    give the same graphs and parity on every zoo model, but the torch.export one took
    5–15 s per model here against 0.2–1.6 s, and needs onnxscript; torch is pinned, and
    the switch is this one call should the TorchScript exporter be removed.
    """
    import io

    wrapped = _Exportable(net, prep).eval()
    example = torch.zeros((2, prep.size, prep.size), dtype=torch.uint8)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter"
            # ... and its advice for models in training mode (this one is in eval mode)
            warnings.filterwarnings("ignore", message="It is recommended that constant folding")
            torch.onnx.export(
                wrapped,
                (example,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
                # Keep BatchNormalization nodes (the model is in eval mode): folding them
                # into the convolutions here would make weights stored as float16 (ship)
                # inexact in float16; ONNX Runtime fuses them itself when it loads the graph.
                training=torch.onnx.TrainingMode.PRESERVE,
            )
    except Exception as error:  # the exporter raises many types; all mean "cannot export"
        first = (str(error).strip().splitlines() or [""])[0]
        raise ModelError(
            f"cannot export {arch!r} to ONNX (opset {opset}): {type(error).__name__}: {first}"
        ) from error
    import onnx

    return onnx.load_model_from_string(buffer.getvalue())


def _half_initializers(proto, min_size: int = 4096) -> int:
    """Store large float32 weights that float16 holds exactly as float16 + a Cast node.

    Models shipped with float16 weights (`ferkit ship`) export to float32 graphs whose big
    weights are all float16 values; keeping them as float16 halves the file and loses
    nothing. ONNX Runtime folds the Casts when it loads the graph, so it computes in float32
    at the same speed. Returns the number of tensors converted.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph, converted = proto.graph, 0
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        if values.size < min_size or not np.array_equal(values.astype(np.float16), values):
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + "_fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        cast = helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT)
        graph.node.insert(0, cast)
        converted += 1
    return converted


def export_onnx(
    model,
    out: str | Path | None = None,
    *,
    int8: bool | str = False,
    opset: int = DEFAULT_OPSET,
    data: str | Path | None = None,
    check_samples: int | None = 1000,
    calib_samples: int = 1000,
    tolerance: float = 1e-4,
    min_agreement: float = 0.9,
) -> ExportReport:
    """Export `model` (a run folder, checkpoint or shipped name, or a model from
    `load_model`) to ONNX, check it, and write it atomically to `out`.

    int8: False, True (static if training images are available, else dynamic), "static"
        or "dynamic".
    data: HDF5 store for the parity faces (test split) and calibration (train split);
        default: the store the model was trained on, else data/fer2013.h5 if present.
        Without one, parity runs on random pixels and int8 falls back to dynamic.
    check_samples: faces of the test split compared with PyTorch (None: the whole split).
    Raises ModelError when the export fails a check; nothing is written then.
    """
    import onnx

    from ferkit.infer.backends import OnnxClassifier, TorchClassifier
    from ferkit.infer.loading import open_classifier

    if isinstance(model, str | Path):
        model = getattr(open_classifier(model, backend="torch"), "model", None)
    meta = getattr(model, "ferkit", None)
    if meta is None:
        raise ModelError("model has no `ferkit` metadata; load it with ferkit.load_model")
    method = int8_method(int8)
    source = Path(meta.path) if meta.path else None
    if out is None:
        if source is None:
            raise ConfigError("give an output path: the model was not loaded from a file")
        out = default_output(source, method != "none")
    out = Path(out)
    prep = meta.preprocessing

    check, labels, check_from, calib = _faces(model, data, check_samples, calib_samples, method)
    if method == "auto":
        method = "static" if calib is not None else "dynamic"
        if method == "dynamic":
            log.warning("no training images for calibration: using dynamic int8 quantisation")
    if method == "static" and calib is None:
        raise ConfigError(
            "static int8 quantisation needs training images to calibrate on: pass an HDF5 "
            "store (--data), or choose dynamic int8 (--int8-method dynamic: weights only, "
            "several times slower than fp32 on a CPU)"
        )

    net = copy.deepcopy(model).float().cpu().eval()
    padded = pad_channels(net)  # exact; None where the model is not a chain it can pad
    proto = _to_proto(padded or net, prep, opset, meta.arch)
    if method == "none":
        _half_initializers(proto)
    else:
        with tempfile.TemporaryDirectory(prefix="ferkit-export-") as workdir:
            proto = quantize_int8(proto, method, calib, Path(workdir))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ModelError(f"{out}: the exported graph is invalid: {error}") from error

    sha = sha256_file(source) if source and source.is_file() else None
    del proto.metadata_props[:]  # the quantiser's notes; every ferkit value is JSON
    props = {
        "format": FORMAT,
        "arch": meta.arch,
        "class_names": list(meta.class_names),
        "input_size": [prep.size, prep.size],
        "input_dtype": "uint8",
        "preprocessing": prep.to_dict(),
        "source_checkpoint": source.name if source else None,
        "source_sha256": sha,
        "quantization": method,
        "channels_padded_to": MULTIPLE if padded is not None else None,
        "metrics": meta.metrics,
    }
    _set_props(proto, props)

    expected = TorchClassifier(model, calibrated=False, tta=False).predict_proba(check)
    raw = OnnxClassifier(proto.SerializeToString(), calibrated=False, tta=False)
    got = raw.predict_proba(check)
    max_diff = float(np.abs(got - expected).max()) if len(check) else 0.0
    agreement = float((got.argmax(1) == expected.argmax(1)).mean()) if len(check) else 1.0
    where = f"{check_from}, {len(check)} faces"
    if method == "none" and max_diff > tolerance:
        raise ModelError(
            f"{out}: ONNX output differs from PyTorch by {max_diff:.2e} (> tolerance "
            f"{tolerance:g}) on {where}; not written"
        )
    if method != "none" and agreement < min_agreement:
        raise ModelError(
            f"{out}: int8 ({method}) model agrees with PyTorch on only {agreement:.1%} of "
            f"{where} (< {min_agreement:.0%}); not written. Try --int8-method "
            f"{'dynamic' if method == 'static' else 'static'} or keep fp32"
        )
    _set_props(proto, {"parity": {"max_abs_diff": max_diff, "agreement": agreement, "on": where}})
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())

    report = ExportReport(
        path=out,
        quantization=method,
        opset=opset,
        size_bytes=out.stat().st_size,
        source_sha256=sha,
        check_inputs=check_from,
        check_count=len(check),
        max_abs_diff=max_diff,
        agreement=agreement,
        calibration=f"{len(calib)} training faces" if method == "static" else None,
        channels_padded_to=MULTIPLE if padded is not None else None,
    )
    if labels is not None and len(check):
        report.accuracy_torch = float((expected.argmax(1) == labels).mean())
        report.accuracy_onnx = float((got.argmax(1) == labels).mean())
    return report


def _faces(model, data, check_samples, calib_samples, method):
    """(check faces, their labels, where from, calibration faces or None)."""
    from ferkit.data.store import open_store

    store_path = Path(data) if data is not None else _default_store(model)
    size = model.ferkit.preprocessing.size
    if store_path is None:
        rng = np.random.default_rng(0)
        check = rng.integers(0, 256, (check_samples or 256, size, size), dtype=np.uint8)
        return check, None, "random pixels (no HDF5 store given)", None
    with open_store(store_path) as store:
        images, labels = store.split_arrays("test")
        check, labels = _sample(images, labels, check_samples)
        calib = None
        if method in ("auto", "static"):
            calib, _ = _sample(store.split_arrays("train")[0], None, calib_samples)
    if check.shape[1:] != (size, size):
        raise ConfigError(
            f"{store_path}: faces are {check.shape[1]}×{check.shape[2]}, the model takes "
            f"{size}×{size}"
        )
    return check, labels.astype(np.int64), f"{store_path} test split", calib


def _set_props(proto, props: dict) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
