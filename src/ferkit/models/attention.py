"""Attention variants of the 48×48 ResNet-18: squeeze-and-excitation and CBAM.

- SE (Hu et al. 2018): global-average-pool → bottleneck MLP → sigmoid gate per channel.
- CBAM (Woo et al. 2018): a channel gate from both average- and max-pooled features through
  a shared MLP, then a spatial gate from a 7×7 conv over the per-pixel channel mean and max.

Both sit on each residual branch just before the addition, as in the papers, and cost
little: a few percent more parameters and FLOPs than resnet18. Gates use 1×1 convs on
(N, C, 1, 1) tensors rather than Linear layers so they stay in channels_last layout.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ferkit.models.layers import make_activation
from ferkit.models.registry import register_model
from ferkit.models.resnet import BasicBlock, ResNet, base_channels


def _mlp(channels: int, reduction: int, act: str) -> nn.Sequential:
    hidden = max(channels // reduction, 4)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), make_activation(act), nn.Conv2d(hidden, channels, 1)
    )


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, act: str = "relu", reduction: int = 16):
        super().__init__()
        self.mlp = _mlp(channels, reduction, act)

    def forward(self, x):
        return x * torch.sigmoid(self.mlp(x.mean(dim=(2, 3), keepdim=True)))


class CBAM(nn.Module):
    def __init__(self, channels: int, act: str = "relu", reduction: int = 16, kernel: int = 7):
        super().__init__()
        self.mlp = _mlp(channels, reduction, act)
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        pooled_avg = x.mean(dim=(2, 3), keepdim=True)
        pooled_max = x.amax(dim=(2, 3), keepdim=True)
        x = x * torch.sigmoid(self.mlp(pooled_avg) + self.mlp(pooled_max))
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


def _attention_resnet18(attention, num_classes, in_chans, act, dropout, width) -> ResNet:
    return ResNet(
        BasicBlock,
        (2, 2, 2, 2),
        num_classes,
        in_chans,
        act=act,
        dropout=dropout,
        base=base_channels(width),
        attention=partial(attention, act=act),
    )


@register_model("se_resnet18")
def se_resnet18(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> nn.Module:
    """resnet18 with a squeeze-and-excitation gate (reduction 16) in every block."""
    return _attention_resnet18(SqueezeExcite, num_classes, in_chans, act, dropout, width)


@register_model("cbam_resnet18")
def cbam_resnet18(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.0,
    width: float = 1.0,
) -> nn.Module:
    """resnet18 with CBAM channel + spatial attention (reduction 16, 7×7) in every block."""
    return _attention_resnet18(CBAM, num_classes, in_chans, act, dropout, width)
