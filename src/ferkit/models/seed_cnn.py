"""The seed CNN: the plain Keras-style baseline that FER-2013 study projects start from.

    Conv3×3 32 → Conv3×3 64 → MaxPool → Conv3×3 128 → MaxPool → Conv3×3 256 → MaxPool
    → Flatten (256×6×6 = 9216) → Dense 256 → Dense 128 → Dense num_classes

Every conv and hidden dense layer is followed by BatchNorm then the activation; Dropout
follows the two hidden dense layers. Convs use 'same' padding, so 48×48 shrinks only at
the three 2×2 max-pools: 48 → 24 → 12 → 6. The model is one flat `features` and one flat
`classifier` sequence, so its layers read in order exactly as above.
"""

from __future__ import annotations

from torch import nn

from ferkit.models.layers import conv_bn_act, make_activation
from ferkit.models.registry import INPUT_SIZE, register_model


class SeedCNN(nn.Module):
    def __init__(
        self, num_classes: int = 7, in_chans: int = 1, act: str = "relu", dropout: float = 0.25
    ):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_act(in_chans, 32, act),
            *conv_bn_act(32, 64, act),
            nn.MaxPool2d(2),
            *conv_bn_act(64, 128, act),
            nn.MaxPool2d(2),
            *conv_bn_act(128, 256, act),
            nn.MaxPool2d(2),
        )
        flat = 256 * (INPUT_SIZE // 8) ** 2  # 9216
        self.classifier = nn.Sequential(
            nn.Flatten(),
            *_dense_bn_act(flat, 256, act, dropout),
            *_dense_bn_act(256, 128, act, dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _dense_bn_act(in_features: int, out_features: int, act: str, dropout: float):
    return [
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features),
        make_activation(act),
        nn.Dropout(dropout),
    ]


@register_model("seed_cnn")
def seed_cnn(
    num_classes: int = 7, in_chans: int = 1, *, act: str = "relu", dropout: float = 0.25
) -> nn.Module:
    """The seed baseline CNN (~2.8M parameters, almost all in the 9216→256 dense layer)."""
    return SeedCNN(num_classes, in_chans, act=act, dropout=dropout)
