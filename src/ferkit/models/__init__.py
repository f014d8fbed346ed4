"""Networks and checkpoints: the model zoo (registry.py plus one file per family) and the
self-describing checkpoint format (checkpoint.py).

    create_model("resnet18", act="gelu")   # any registered name; list_models() lists them
    save_checkpoint("runs/x/best.pt", model, arch=..., arch_kwargs=..., preprocessing=...)
    load_model("runs/x")                   # file, run folder or shipped name → eval model
"""

from ferkit.models.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from ferkit.models.registry import create_model, list_models, model_summary, register_model

__all__ = [
    "Checkpoint",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_summary",
    "register_model",
    "save_checkpoint",
]
