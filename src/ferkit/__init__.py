"""ferkit: facial expression recognition on FER-2013, from data to live webcams.

The public API is imported lazily so that `import ferkit` stays cheap (no torch, no
OpenCV) until a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module

from ferkit.labels import EMOTIONS

__version__ = "0.1.0"

_LAZY = {
    "create_model": "ferkit.models.registry",
    "list_models": "ferkit.models.registry",
    "load_model": "ferkit.models.checkpoint",
    "Recognizer": "ferkit.infer.recognizer",
}

__all__ = ["EMOTIONS", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
