"""int8 quantisation of an exported ONNX graph with ONNX Runtime's quantiser.

Static quantisation (QDQ, per-channel int8 weights, uint8 activations) is calibrated on
training faces and is the fast one on a CPU; dynamic quantisation (weights only) needs no
calibration data and is the fallback where no training images are at hand, several times
slower than fp32 on a CPU. `ferkit.export` decides which applies, quantises through
`quantize_int8`, then checks the result against PyTorch like any export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.errors import ConfigError
from ferkit.infer.backends import ONNX_INPUT as INPUT_NAME

INT8_METHODS = ("static", "dynamic")


def int8_method(int8: bool | str) -> str:
    """export_onnx's `int8` as a method: "none", "auto" (static where training images are
    at hand, else dynamic), "static" or "dynamic"."""
    if int8 is False:
        return "none"
    if int8 is True:
        return "auto"
    if int8 in INT8_METHODS:
        return int8
    raise ConfigError(f"unknown int8 method {int8!r}; expected one of {', '.join(INT8_METHODS)}")


def quantize_int8(proto, method: str, calib_images: np.ndarray | None, workdir: Path):
    """int8 ModelProto: static QDQ (per-channel int8 weights, uint8 activations; the
    softmax stays float so probabilities are not rounded to 1/256) or dynamic.

    Weights use 7 bits (`reduce_range`): ONNX Runtime's uint8×int8 convolution on CPUs
    without VNNI (AVX2) sums pairs of products in int16, which saturates with full-range
    per-channel weights. Measured on a trained mini-Xception: full range agreed with fp32
    on 35% of faces, 7 bits on 100%.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, prepared, int8 = workdir / "fp32.onnx", workdir / "prepared.onnx", workdir / "int8.onnx"
    onnx.save(proto, str(fp32))
    # Shape inference and graph fusions (batch norm into conv) before choosing ranges.
    quant_pre_process(str(fp32), str(prepared))
    softmax = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"]
    if method == "static":
        quantize_static(
            str(prepared),
            str(int8),
            _CalibrationReader(calib_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=softmax,
        )
    else:
        quantize_dynamic(str(prepared), str(int8), weight_type=QuantType.QInt8)
    return onnx.load(str(int8))


class _CalibrationReader:
    """Feeds training faces to ONNX Runtime's calibrator in batches."""

    def __init__(self, images: np.ndarray, batch_size: int = 64) -> None:
        self._batches = iter(
            [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        )

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    def rewind(self):  # pragma: no cover - part of the calibrator's protocol, unused here
        raise NotImplementedError
