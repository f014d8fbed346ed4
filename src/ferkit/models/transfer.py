"""Transfer learning from ImageNet: `vgg16` and `resnet50` with torchvision's parameter names.

Both networks keep torchvision's exact layout and names (`features.0.weight` …
`classifier.6.weight`; `conv1.weight`, `bn1.*`, `layer1.0.conv1.weight` … `fc.weight`), so
`create_model("resnet50", pretrained="resnet50.pth")` loads a torchvision ImageNet state
dict from a local file (ferkit never downloads anything) through
`ferkit.models.pretrained.load_pretrained`: gray input gets the first conv's RGB filters
summed, the 1000-class head is skipped where its shape differs, and any other mismatch is
an error that lists the keys.

`upscale=96` (or 224) resizes the 48×48 input inside the model (bilinear), closer to the
scale of ImageNet objects; it costs (upscale/48)² times the compute. By default (None)
the networks run on 48×48 directly: resnet50 then ends at 2×2 and vgg16 at 1×1 pixels.
"""

from __future__ import annotations

from torch import nn

from ferkit.models.layers import make_activation, resize_input
from ferkit.models.pretrained import load_pretrained
from ferkit.models.registry import register_model
from ferkit.models.resnet import Bottleneck, ResNet

# torchvision's configuration "D": conv widths, "M" = 2×2 max-pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    """torchvision's `vgg16` (no batch norm): features → 7×7 adaptive pool → 3 dense layers."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        act: str = "relu",
        dropout: float = 0.5,
        fc: int = 4096,
        upscale: int | None = None,
    ):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = []
        chans = in_chans
        for item in _VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(chans, item, 3, padding=1), make_activation(act)]
                chans = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, fc),
            make_activation(act),
            nn.Dropout(dropout),
            nn.Linear(fc, fc),
            make_activation(act),
            nn.Dropout(dropout),
            nn.Linear(fc, num_classes),
        )
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = self.features(resize_input(x, self.upscale))
        return self.classifier(self.avgpool(x).flatten(1))


@register_model("vgg16")
def vgg16(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.5,
    fc: int = 4096,
    upscale: int | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """torchvision VGG-16 (138M parameters at fc=4096, 123M of them in the classifier);
    `pretrained` is a local torchvision `vgg16` state dict file."""
    model = VGG16(num_classes, in_chans, act=act, dropout=dropout, fc=fc, upscale=upscale)
    if pretrained:
        load_pretrained(
            model,
            pretrained,
            input_conv="features.0.weight",
            head="classifier.",
            origin="torchvision's vgg16",
        )
    return model


@register_model("resnet50")
def resnet50(
    num_classes: int = 7,
    in_chans: int = 1,
    *,
    act: str = "relu",
    dropout: float = 0.0,
    upscale: int | None = None,
    pretrained: str | None = None,
) -> nn.Module:
    """torchvision ResNet-50 (ImageNet stem, 23.5M parameters with a 7-class head);
    `pretrained` is a local torchvision `resnet50` state dict file."""
    model = ResNet(
        Bottleneck,
        (3, 4, 6, 3),
        num_classes,
        in_chans,
        act=act,
        dropout=dropout,
        stem="imagenet",
        upscale=upscale,
    )
    if pretrained:
        load_pretrained(
            model,
            pretrained,
            input_conv="conv1.weight",
            head="fc.",
            origin="torchvision's resnet50",
        )
    return model
