"""Transfer learning from ImageNet: `vgg16` and `resnet50` with torchvision's parameter names.

Both networks keep torchvision's exact layout and names (`features.0.weight` …
`classifier.6.weight`; `conv1.weight`, `bn1.*`, `layer1.0.conv1.weight` … `fc.weight`), so
`create_model("resnet50", pretrained="resnet50.pth")` loads a torchvision ImageNet state
dict from a local file (ferkit never downloads anything). While loading:

- the first conv is adapted to the input channels: for gray input its RGB filters are
  summed over the input-channel axis, which gives the response the RGB network has to a
  gray image (R = G = B);
- the classifier head (`classifier.*` / `fc.*`) is skipped where its shape differs
  (1000 ImageNet classes vs 7 emotions, or a smaller `fc` for vgg16) and stays freshly
  initialised;
- any other missing, unexpected or mis-shaped key is an error that lists them, since a
  half-loaded backbone would silently train from scratch.

`upscale=96` (or 224) resizes the 48×48 input inside the model (bilinear), closer to the
scale of ImageNet objects; it costs (upscale/48)² times the compute. By default (None)
the networks run on 48×48 directly: resnet50 then ends at 2×2 and vgg16 at 1×1 pixels.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ferkit.errors import ModelError
from ferkit.models.checkpoint import clean_state_dict
from ferkit.models.layers import make_activation, resize_input
from ferkit.models.registry import register_model
from ferkit.models.resnet import Bottleneck, ResNet

log = logging.getLogger(__name__)

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


def _adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """First-conv filters for `in_chans` inputs from RGB ones: summed for gray; otherwise
    the RGB filters are cycled and rescaled so the response keeps its magnitude."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ModelError(f"pretrained weights not found: {path} (ferkit never downloads them)")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read means the file is unusable
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelError(f"{path}: cannot read pretrained weights ({detail})") from error
    for wrapper in ("state_dict", "model"):  # training scripts often nest the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return clean_state_dict(state)


def load_torchvision_weights(
    model: nn.Module, path: str | Path, *, input_conv: str, head: str
) -> list[str]:
    """Load a torchvision state dict file into `model` as described in the module docstring.

    `input_conv` names the first conv weight, `head` the classifier's key prefix. Returns
    the head keys that were skipped (left at their initialisation).
    """
    path = Path(path)
    source = _read_state_dict(path)
    target = model.state_dict()
    loaded: dict[str, Tensor] = {}
    skipped, mismatched = [], []
    for key, value in source.items():
        if key not in target:
            continue
        want = target[key].shape
        if key == input_conv and value.shape != want:
            value = _adapt_input_conv(value, want[1])
        if value.shape == want:
            loaded[key] = value
        elif key.startswith(head):
            skipped.append(key)
        else:
            mismatched.append(f"{key} {tuple(value.shape)} ≠ {tuple(want)}")
    unexpected = [k for k in source if k not in target]
    missing = [
        k
        for k in target
        if k not in source and not k.startswith(head) and not k.endswith("num_batches_tracked")
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise ModelError(
            f"{path}: does not fit {type(model).__name__} (is it torchvision's?); "
            + "; ".join(problems)
        )
    model.load_state_dict(loaded, strict=False)
    log.info(
        "loaded %d tensors from %s; head left untrained: %s",
        len(loaded),
        path,
        ", ".join(skipped) or "none",
    )
    return skipped


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
        load_torchvision_weights(
            model, pretrained, input_conv="features.0.weight", head="classifier."
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
        load_torchvision_weights(model, pretrained, input_conv="conv1.weight", head="fc.")
    return model
