"""Optimisers, learning-rate schedules and early stopping: how a run moves and when it ends.

Warm-up/cosine and one-cycle change the learning rate every batch (smooth even for short
runs); step and plateau schedules change it once per epoch, the latter on validation
accuracy. Every piece exposes `state_dict()` so that a resumed run continues exactly.
"""

from __future__ import annotations

import math

import torch

from ferkit.config import OptimConfig, SchedulerConfig


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), Adam or AdamW; biases and norm weights get no weight decay."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    betas = (cfg.beta1, cfg.beta2)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=betas, eps=cfg.eps)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps)


class _WarmupCosine:
    """lr factor: linear warm-up to 1, then cosine down to `min_ratio` at the last step."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float):
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LRSchedule:
    """One learning-rate schedule behind `step_batch()` and `step_epoch(val_acc)`."""

    PER_BATCH = ("cosine", "onecycle")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        cfg: SchedulerConfig,
        *,
        epochs: int,
        steps_per_epoch: int,
        base_lr: float,
    ):
        self.cfg = cfg
        self.optimizer = optimizer
        total = max(epochs * steps_per_epoch, 1)
        sched = torch.optim.lr_scheduler
        if cfg.name == "cosine":
            warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
            factor = _WarmupCosine(min(warmup, total), total, cfg.min_lr_ratio)
            self.scheduler = sched.LambdaLR(optimizer, factor)
        elif cfg.name == "onecycle":
            steps = total + 1  # stepped after every batch, the last one included
            self.scheduler = sched.OneCycleLR(
                optimizer,
                max_lr=base_lr,
                total_steps=steps,
                # torch divides by the rising phase's length, pct_start × steps − 1: a run
                # of a few batches (a smoke run on a subset) rises over 1.5 steps instead
                # of failing with ZeroDivisionError; long runs are unchanged.
                pct_start=max(cfg.pct_start, 1.5 / steps),
                div_factor=cfg.div_factor,
                final_div_factor=cfg.final_div_factor,
                cycle_momentum=False,
            )
        elif cfg.name == "plateau":
            self.scheduler = sched.ReduceLROnPlateau(
                optimizer, mode="max", factor=cfg.factor, patience=cfg.patience
            )
        elif cfg.name == "step":
            self.scheduler = sched.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        else:
            self.scheduler = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step_batch(self) -> None:
        if self.cfg.name in self.PER_BATCH:
            self.scheduler.step()

    def step_epoch(self, val_acc: float) -> None:
        if self.cfg.name == "plateau":
            self.scheduler.step(val_acc)
        elif self.cfg.name == "step":
            self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; the length stays this run's (a resumed run may add epochs)."""
        if self.scheduler is None:
            return
        if self.cfg.name in self.PER_BATCH:  # only the step count; lengths are this run's
            position = ("last_epoch", "_step_count", "_last_lr")
            state = {**self.scheduler.state_dict(), **{k: state[k] for k in position}}
        self.scheduler.load_state_dict(state)


class EarlyStopping:
    """Tracks the best validation accuracy; stops after `patience` epochs without a gain.

    patience=0 never stops early but still tracks the best epoch (for best.pt).
    """

    def __init__(self, patience: int = 0, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's metric; True when it is a new best."""
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
