"""The VGG variant of Khaireddin & Chen 2021 ("Facial Emotion Recognition: State of the Art
Performance on FER2013", 73.28 % single-network test accuracy).

    4 stages (64, 128, 256, 512 channels × `width`), each:
        Conv3×3 + BN + act → Conv3×3 + BN + act → MaxPool 2×2     (48 → 24 → 12 → 6 → 3)
    Flatten (512×3×3) → Dense fc + act + Dropout → Dense fc + act + Dropout → Dense classes

The paper uses fc=4096 (≈ 40M parameters, 36M of them in the dense layers). The default
here is fc=1024 (≈ 10.5M parameters): the convolutions, which do nearly all the compute,
are the same, and checkpoints with optimizer state shrink from ~0.5 GB to ~125 MB.
`fc=4096, dropout=0.2` reproduces the authors' network.
"""

from __future__ import annotations

from torch import nn

from ferkit.models.layers import conv_bn_act, make_activation, scaled_channels
from ferkit.models.registry import INPUT_SIZE, register_model

_STAGES = (64, 128, 256, 512)


class VGGFER(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        act: str = "relu",
        dropout: float = 0.2,
        width: float = 1.0,
        fc: int = 1024,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for stage in _STAGES:
            out = scaled_channels(stage, width)
            layers += [*conv_bn_act(chans, out, act), *conv_bn_act(out, out, act), nn.MaxPool2d(2)]
            chans = out
        self.features = nn.Sequential(*layers)
        side = INPUT_SIZE // 2 ** len(_STAGES)  # 3
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chans * side * side, fc),
            make_activation(act),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),
            make_activation(act),
            nn.Dropout(dropout),
            nn.Linear(fc, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("vgg")
def vgg(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.2,
    width: float = 1.0,
    fc: int = 1024,
) -> nn.Module:
    """Khaireddin & Chen's FER VGG; `width` scales the conv channels, `fc` the dense layers."""
    return VGGFER(num_classes, in_chans, act=act, dropout=dropout, width=width, fc=fc)
