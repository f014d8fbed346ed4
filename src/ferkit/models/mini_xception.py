"""mini-Xception (Arriaga, Valdenegro-Toro & Plöger 2017, "Real-time Convolutional Neural
Networks for Emotion and Gender Classification"): ~57k parameters, real-time on a CPU.

Layout of the authors' Keras `mini_XCEPTION`:
    stem: two unpadded Conv3×3 8 (48 → 46 → 44), each BN + act
    4 modules (16, 32, 64, 128 channels), each:
        residual = Conv1×1 stride 2 + BN
        x = SepConv3×3 + BN + act → SepConv3×3 + BN → MaxPool3×3 stride 2 (44→22→11→6→3)
        x = x + residual
    head: Conv3×3 num_classes (with bias) → global average pool → logits
A separable conv is a depthwise 3×3 followed by a pointwise 1×1, both without bias.
`dropout` (off by default, not in the paper) acts before the head conv.
"""

from __future__ import annotations

from torch import nn

from ferkit.models.layers import make_activation
from ferkit.models.registry import register_model


class SeparableConv2d(nn.Sequential):
    """Depthwise 3×3 then pointwise 1×1 (Keras SeparableConv2D, padding='same')."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(
            nn.Conv2d(in_chans, in_chans, 3, padding=1, groups=in_chans, bias=False),
            nn.Conv2d(in_chans, out_chans, 1, bias=False),
        )


class XceptionModule(nn.Module):
    """Two separable convs and a stride-2 max-pool, added to a strided 1×1 shortcut."""

    def __init__(self, in_chans: int, out_chans: int, act: str):
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, 1, stride=2, bias=False), nn.BatchNorm2d(out_chans)
        )
        self.body = nn.Sequential(
            SeparableConv2d(in_chans, out_chans),
            nn.BatchNorm2d(out_chans),
            make_activation(act),
            SeparableConv2d(out_chans, out_chans),
            nn.BatchNorm2d(out_chans),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        act: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        channels = (16, 32, 64, 128)
        stem_chans = 8
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_chans, 3, bias=False),
            nn.BatchNorm2d(stem_chans),
            make_activation(act),
            nn.Conv2d(stem_chans, stem_chans, 3, bias=False),
            nn.BatchNorm2d(stem_chans),
            make_activation(act),
        )
        widths = (stem_chans, *channels)
        self.blocks = nn.Sequential(
            *(XceptionModule(a, b, act) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv2d(channels[-1], num_classes, 3, padding=1)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(self.dropout(x)).mean(dim=(2, 3))


@register_model("mini_xception")
def mini_xception(
    num_classes: int = 7, in_chans: int = 1, *, act: str = "relu", dropout: float = 0.0
) -> nn.Module:
    """mini-Xception as published (16-32-64-128 modules, 8-channel stem)."""
    return MiniXception(num_classes, in_chans, act=act, dropout=dropout)
