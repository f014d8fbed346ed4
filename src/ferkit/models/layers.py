"""Building blocks shared by the model families: the activation switch and conv-BN-act.

Every model takes `act=` so that a tuner can search over activations with one option;
`make_activation` is the only place that maps those names to modules.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from ferkit.errors import ModelError

# name → (module class, whether it accepts inplace=True)
_ACTIVATIONS: dict[str, tuple[type[nn.Module], bool]] = {
    "relu": (nn.ReLU, True),
    "relu6": (nn.ReLU6, True),  # EfficientNet-Lite's, kept for its ImageNet weights
    "elu": (nn.ELU, True),
    "gelu": (nn.GELU, False),
    "silu": (nn.SiLU, True),
    "leaky_relu": (nn.LeakyReLU, True),
}
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for `name` (in-place where the op allows, to save memory)."""
    try:
        cls, inplace = _ACTIVATIONS[name]
    except KeyError:
        raise ModelError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        ) from None
    return cls(inplace=True) if inplace else cls()


def scaled_channels(channels: int, width: float) -> int:
    """Channels of a layer under a width multiplier, rounded, never below 8."""
    return max(8, int(round(channels * width)))


def conv_bn_act(
    in_chans: int, out_chans: int, act: str, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    """[Conv (no bias, 'same' padding for odd kernels), BatchNorm, activation] as a list,
    so callers can splice the layers into a flat nn.Sequential."""
    return [
        nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chans),
        make_activation(act),
    ]


def resize_input(x: Tensor, size: int | None) -> Tensor:
    """Bilinearly resize a batch to size×size (no-op for None or a batch already that size).

    Lets ImageNet-pretrained networks see faces at a scale closer to their training images
    while the rest of ferkit keeps feeding 48×48 crops.
    """
    if size is None or x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
