"""ResNets (He et al. 2016) with torchvision's module names, adapted to 48×48 faces.

`ResNet` is written so that its parameter names are exactly torchvision's (`conv1`, `bn1`,
`layer1.0.conv1`, ..., `layer4.1.downsample.0`, `fc`). With `stem="imagenet"` it *is*
torchvision's network (7×7 stride-2 conv + max-pool, used by `resnet50` in transfer.py, which
loads ImageNet weights by name). With the default `stem="small"` the first conv is 3×3 stride 1
and the max-pool is dropped, as for CIFAR: a 48×48 face then keeps 48→48→24→12→6 pixels
through the four stages instead of collapsing to 2×2, which suits small inputs far better.

Blocks take an optional `attention(channels) -> nn.Module` applied to the residual branch
before the addition (SE / CBAM in attention.py).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ferkit.models.layers import make_activation, resize_input, scaled_channels
from ferkit.models.registry import register_model

Attention = Callable[[int], nn.Module]


class BasicBlock(nn.Module):
    """Two 3×3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride, act: str, attention: Attention | None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attention = attention(planes) if attention else None
        self.downsample = _downsample(inplanes, planes, stride)
        self.act = make_activation(act)

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attention is not None:
            out = self.attention(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.act(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride, torchvision's "v1.5") → 1×1 expand ×4."""

    expansion = 4

    def __init__(self, inplanes, planes, stride, act: str, attention: Attention | None):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.attention = attention(out_planes) if attention else None
        self.downsample = _downsample(inplanes, out_planes, stride)
        self.act = make_activation(act)

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.attention is not None:
            out = self.attention(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.act(out + identity)


def _downsample(inplanes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class ResNet(nn.Module):
    """torchvision-named ResNet; see the module docstring for `stem` and `upscale`."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        depths: tuple[int, int, int, int],
        num_classes: int = 7,
        in_chans: int = 1,
        *,
        act: str = "relu",
        dropout: float = 0.0,
        base: int = 64,
        stem: str = "small",
        attention: Attention | None = None,
        upscale: int | None = None,
    ):
        super().__init__()
        self.upscale = upscale
        if stem == "small":
            self.conv1 = nn.Conv2d(in_chans, base, 3, 1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, base, 7, 2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        else:
            raise ValueError(f"stem must be 'small' or 'imagenet', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(base)
        self.act = make_activation(act)
        inplanes = base
        for index, depth in enumerate(depths):
            planes, stride = base * 2**index, 1 if index == 0 else 2
            blocks = []
            for _ in range(depth):
                blocks.append(block(inplanes, planes, stride, act, attention))
                inplanes, stride = planes * block.expansion, 1
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = resize_input(x, self.upscale)
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))


def base_channels(width: float) -> int:
    """Stage-1 channels for a width multiplier (64 at width 1)."""
    return scaled_channels(64, width)


@register_model("resnet18")
def resnet18(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> nn.Module:
    """ResNet-18 with a 3×3 stride-1 stem and no max-pool (48×48 → 6×6 at the last stage)."""
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes,
        in_chans,
        act=act,
        dropout=dropout,
        base=base_channels(width),
    )


@register_model("resnet34")
def resnet34(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> nn.Module:
    """ResNet-34 with the same 48×48 stem as resnet18."""
    return ResNet(
        BasicBlock,
        (3, 4, 6, 3),
        num_classes,
        in_chans,
        act=act,
        dropout=dropout,
        base=base_channels(width),
    )
