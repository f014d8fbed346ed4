"""Zero-pad the channel counts of a plain convolutional chain to a multiple of 8, exactly.

Why: ONNX Runtime's convolution kernels work on blocks of channels, and odd counts fall off
its fast paths. The shipped `fast` (VGG width 0.33: 21/42/84/169 channels) ran 1.3–1.5× faster
int8 and 1.4× faster fp32 in ONNX Runtime with them padded to 24/48/88/176 (batch 64,
2 threads; multiples of 16 or 32 were slower than 8 in int8). `ferkit.export` pads every
model this module accepts before it traces it.

Why it is exact: a padded output channel has an all-zero filter (and bias), and its
BatchNorm maps 0 to 0 (mean 0, variance 1, weight 1, bias 0), so it is exactly 0 after
conv + BN; activations that keep 0 at 0, pooling and dropout keep it there; the next
convolution or linear layer has zero weights from it. Every real channel therefore sums
the same products plus exact zeros.

Only chains are padded: the model's forward, traced with torch.fx, must call its modules
one after another, each on the previous one's output, and every module that sees padded
channels must be one of the kinds above. Anything else (residual additions,
concatenation, attention) gives None, and the model is exported as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

MULTIPLE = 8

# Modules that act channel by channel and keep an all-zero channel all zero.
_ZERO_KEEPING = (
    nn.ReLU, nn.ELU, nn.GELU, nn.SiLU, nn.LeakyReLU,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity,
)  # fmt: skip


def pad_channels(model: nn.Module, multiple: int = MULTIPLE) -> nn.Sequential | None:
    """An nn.Sequential computing what `model` computes (in eval mode) with every Conv2d's
    output channels zero-padded to a multiple of `multiple`; None when `model` is not a
    chain this function can pad exactly, or when no channel count changes."""
    layers = _chain(model)
    if layers is None:
        return None
    padded: list[nn.Module] = []
    real, extra = 0, 0  # channels of the current tensor: real ones, then zero padding
    flat = False  # the current tensor is the flattened (N, C·H·W) of padded channels
    for layer in layers:
        layer = copy.deepcopy(layer)
        if isinstance(layer, nn.Conv2d) and not flat:
            if layer.groups != 1 or (extra and layer.in_channels != real):
                return None
            real = layer.out_channels
            _pad_conv(layer, extra, -real % multiple)
            extra = -real % multiple
        elif extra == 0:
            pass  # no padded channels reach this module: it computes what it did
        elif isinstance(layer, nn.BatchNorm2d) and not flat:
            if layer.running_mean is None or layer.num_features != real:
                return None
            _pad_batchnorm(layer, extra)
        elif isinstance(layer, nn.Flatten) and not flat and layer.start_dim == 1:
            flat = True
        elif isinstance(layer, nn.Linear) and flat:
            if layer.in_features % real:
                return None
            _pad_linear_inputs(layer, real, extra)
            real, extra, flat = layer.out_features, 0, False
        elif not isinstance(layer, _ZERO_KEEPING):
            return None
        padded.append(layer)
    if extra or not _changed(padded, layers):
        return None  # output channels would change, or there is nothing to pad
    return nn.Sequential(*padded).eval()


def _changed(padded: list[nn.Module], layers: list[nn.Module]) -> bool:
    return any(
        isinstance(p, nn.Conv2d) and p.weight.shape != o.weight.shape
        for p, o in zip(padded, layers, strict=True)
    )


def _chain(model: nn.Module) -> list[nn.Module] | None:
    """The modules `model.forward` calls one after another, or None if it does anything
    else (or cannot be traced)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # fx raises many types on code it cannot trace; all mean "not a chain"
        return None
    layers, previous = [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                return None
        elif node.op == "call_module" and node.args == (previous,) and not node.kwargs:
            layers.append(model.get_submodule(node.target))
        elif node.op == "output" and node.args == (previous,):
            return layers
        else:
            return None
        previous = node
    return None


def _grown(tensor: torch.Tensor, dim: int, extra: int, fill: float = 0.0) -> torch.Tensor:
    """`tensor` with `extra` slices of `fill` appended along `dim`."""
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([tensor, tensor.new_full(shape, fill)], dim)


def _pad_conv(conv: nn.Conv2d, extra_in: int, extra_out: int) -> None:
    """Zero weights from `extra_in` padded input channels and zero filters (and bias) for
    `extra_out` new output channels."""
    with torch.no_grad():
        weight = _grown(_grown(conv.weight, 1, extra_in), 0, extra_out)
        conv.weight = nn.Parameter(weight, requires_grad=False)
        if conv.bias is not None:
            conv.bias = nn.Parameter(_grown(conv.bias, 0, extra_out), requires_grad=False)
    conv.in_channels += extra_in
    conv.out_channels += extra_out


def _pad_batchnorm(bn: nn.BatchNorm2d, extra: int) -> None:
    """Padded channels normalised as (0 - 0) / sqrt(1 + eps) · 1 + 0 = 0."""
    with torch.no_grad():
        if bn.affine:
            bn.weight = nn.Parameter(_grown(bn.weight, 0, extra, 1.0), requires_grad=False)
            bn.bias = nn.Parameter(_grown(bn.bias, 0, extra), requires_grad=False)
        bn.running_mean = _grown(bn.running_mean, 0, extra)
        bn.running_var = _grown(bn.running_var, 0, extra, 1.0)
    bn.num_features += extra


def _pad_linear_inputs(linear: nn.Linear, real: int, extra: int) -> None:
    """Zero weights for the flattened positions of the padded channels: NCHW flattens
    channel by channel, so input c·S + s is channel c at spatial position s."""
    out, spatial = linear.out_features, linear.in_features // real
    with torch.no_grad():
        weight = _grown(linear.weight.reshape(out, real, spatial), 1, extra)
        linear.weight = nn.Parameter(weight.reshape(out, -1), requires_grad=False)
    linear.in_features = (real + extra) * spatial
