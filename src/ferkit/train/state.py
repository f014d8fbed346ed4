"""What a run starts from and what it continues from.

A fresh run seeds every generator from `seed` and, for fine-tuning, copies `init`'s
weights into its model. `last.pt` then carries everything beyond the weights that the next
epoch depends on (`train_state`): optimizer, scheduler, loss scaler, EMA, early stopping,
the metric history, and every rank's RNG and augmentation state, so that `restore` after an
interruption makes `train(config, resume=True)` end with the same weights as a run that was
never interrupted. The keys written here are the ones read here: a checkpoint written by
one version of the trainer resumes in the next only while the two stay in step.

`train_state` and `restore` take the trainer's run (`trainer._Run`) and use its model,
ema, optimizer, schedule, scaler, stopper, augment, history, ctx and cfg.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from ferkit.config import TrainConfig
from ferkit.errors import ConfigError
from ferkit.models.checkpoint import load_checkpoint, resolve_checkpoint
from ferkit.train import distributed as D
from ferkit.train.monitor import EpochStats

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_initial_weights(model: torch.nn.Module, cfg: TrainConfig, class_names) -> None:
    """Start a fine-tuning run from `cfg.init`'s weights; the architecture must match.

    The class set may differ (a FER-2013 model fine-tuned into a FER+ 8-class one): the
    output layer's rows of the classes both sets share are carried over by name, and a new
    class (contempt) keeps its fresh initialisation.
    """
    source = load_checkpoint(resolve_checkpoint(cfg.init))
    if source.arch != cfg.model.name or dict(source.arch_kwargs) != dict(cfg.model.args):
        raise ConfigError(
            f"init {cfg.init}: a {source.arch} {source.arch_kwargs} model; this run trains "
            f"{cfg.model.name} {cfg.model.args}"
        )
    state = model.state_dict()  # the model's own tensors: copy_ fills them in place
    rows = [(list(source.class_names).index(name), i) for i, name in enumerate(class_names)
            if name in source.class_names]  # fmt: skip
    n_source, n_target = len(source.class_names), len(class_names)
    for key, tensor in source.state_dict.items():
        target = state[key]
        if tensor.shape == target.shape:
            target.copy_(tensor)
        elif (tensor.shape[0], target.shape[0]) == (n_source, n_target) and (
            tensor.shape[1:] == target.shape[1:]
        ):
            for src, dst in rows:
                target[dst].copy_(tensor[src])
        else:
            raise ConfigError(
                f"init {cfg.init}: {key} has shape {tuple(tensor.shape)}, this run's model "
                f"{tuple(target.shape)}"
            )
    kept = f"{len(rows)} of {n_target} classes" if n_source != n_target else "all classes"
    logger.info("initialised from %s (epoch %s; %s)", source.path, source.epoch, kept)


def train_state(run) -> dict:
    """`last.pt`'s train_state for `run` now. Collective under DDP: every rank calls it."""
    ranks = _gather(
        {"rng": _rng_state(run.ctx.device), "augment": run.augment.state_dict()}, run.ctx
    )
    state = {
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.schedule.state_dict(),
        "scaler": run.scaler.state_dict(),
        "early_stopping": run.stopper.state_dict(),
        "history": [s.to_dict() for s in run.history],
        "ranks": ranks,
    }
    if run.ema is not None:  # the checkpoint's weights are the EMA; keep the raw ones
        state["model"] = run.model.state_dict()
        state["ema_steps"] = run.ema.steps
    return state


def restore(run, path: Path) -> None:
    """Put `run` where the run that wrote `path` (its last.pt) stopped: the same weights,
    optimizer, schedule, RNG streams and history; `run.start_epoch` is the next epoch."""
    ckpt = load_checkpoint(path)
    state = ckpt.train_state
    changed = _changed_keys(ckpt.config or {}, run.cfg.to_dict())
    if changed:
        logger.warning("resuming %s with changed settings: %s", path, ", ".join(changed))
    if ckpt.arch != run.cfg.model.name:
        raise ConfigError(
            f"{path} holds a {ckpt.arch!r} model, the config asks for {run.cfg.model.name!r}"
        )
    raw = state.get("model", ckpt.state_dict)  # present when the run kept an EMA
    run.model.load_state_dict(raw)
    if run.ema is not None:
        run.ema.load_state_dict(
            {"module": ckpt.state_dict, "steps": int(state.get("ema_steps", 0))}
        )
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.stopper.load_state_dict(state["early_stopping"])
    run.history = [EpochStats(**row) for row in state["history"]]
    ranks = state["ranks"]
    if len(ranks) == run.ctx.world_size:
        _set_rng_state(ranks[run.ctx.rank]["rng"], run.ctx.device)
        run.augment.load_state_dict(ranks[run.ctx.rank]["augment"])
    else:
        logger.warning(
            "%s was written by %d processes, this run has %d: RNG streams restart",
            path,
            len(ranks),
            run.ctx.world_size,
        )
    run.start_epoch = ckpt.epoch + 1
    logger.info("resuming %s after epoch %d", path, ckpt.epoch)


def _rng_state(device: torch.device) -> dict:
    """The global torch RNG (dropout); augmentation and shuffling have their own seeds."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _gather(obj, ctx: D.DistContext) -> list:
    """`obj` of every rank, in rank order (all_gather: every rank must call it)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "args":
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys
