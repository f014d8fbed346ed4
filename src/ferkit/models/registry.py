"""The model zoo: a name → factory registry with `create_model` and `list_models`.

Each family module decorates its factories with `@register_model(name)`. The families are
imported lazily, once, the first time the registry is queried, so `create_model("vgg")`
works after importing only this module, and importing it stays cheap.

A factory has the signature `fn(num_classes=7, in_chans=1, *, act=..., dropout=..., ...)`
and returns an `nn.Module` mapping (N, in_chans, 48, 48) float to (N, num_classes) logits.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from importlib import import_module

from torch import nn

from ferkit.errors import ModelError

# Family modules under ferkit.models, imported on first use of the registry.
_FAMILIES = (
    "seed_cnn",
    "mini_xception",
    "vgg",
    "resnet",
    "attention",
    "transfer",
    "efficientnet",
)
_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_families_loaded = False

INPUT_SIZE = 48


def register_model(name: str):
    """Decorator that registers a model factory under `name` (names are unique)."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _load_families() -> None:
    global _families_loaded
    if not _families_loaded:
        for family in _FAMILIES:
            import_module(f"ferkit.models.{family}")
        _families_loaded = True


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def _factory(name: str) -> Callable[..., nn.Module]:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ModelError(f"unknown model {name!r}; {hint}known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_options(name: str) -> dict[str, object]:
    """The keyword options of a model and their defaults (e.g. act, dropout, width)."""
    signature = inspect.signature(_factory(name))
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def create_model(name: str, num_classes: int = 7, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model. An unknown name or option raises `ModelError` with the
    closest matches, since both usually come from a config file or the command line."""
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(num_classes, in_chans, **kwargs)
    except TypeError:
        options = model_options(name)
        unknown = sorted(set(kwargs) - set(options))
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(key, options, n=1))
            else repr(key)
            for key in unknown
        ]
        raise ModelError(
            f"model {name!r} has no option {', '.join(hints)}; "
            f"its options are: {', '.join(options) or 'none'}"
        ) from None
    return factory(num_classes, in_chans, **kwargs)


def model_summary(name: str, **kwargs) -> dict:
    """{"name", "params", "flops"} of a model built with `kwargs`.

    `flops` is the forward cost of one 48×48 image counted by
    `torch.utils.flop_counter.FlopCounterMode`: convolutions and matrix products only, two
    FLOPs per multiply-add (so MACs = flops / 2); normalisation, activations and pooling are
    not counted. The model is built on the meta device, so this allocates no weights and is
    quick even for vgg16.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    kwargs.pop("pretrained", None)  # nothing to load onto the meta device
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        image = torch.empty(1, kwargs.get("in_chans", 1), INPUT_SIZE, INPUT_SIZE)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return {"name": name, "params": params, "flops": int(counter.get_total_flops())}
