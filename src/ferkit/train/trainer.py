"""The fit loop: `train(config) -> TrainResult`.

One function runs a whole training job on CPU, one GPU or many (torchrun → DDP): it reads
the store onto the device once, augments batches there, trains with optional AMP, EMA,
gradient clipping and label smoothing, evaluates on the validation split each epoch, and
writes the run folder (`config.yaml`, `metrics.csv`, `curves.png`, `best.pt`, `last.pt`).
`last.pt` carries everything needed to continue exactly: optimizer, scheduler, scaler,
EMA, every rank's RNG and augmentation state, early stopping and the metric history, so
`train(config, resume=True)` after an interruption ends with the same weights as a run
that was never interrupted (what it carries and how it is read back: `train/state.py`; the
autocast dtype: `train/precision.py`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ferkit.config import TrainConfig, save_config
from ferkit.data.augment import Augmenter
from ferkit.data.loader import BatchIterator, load_split
from ferkit.data.targets import selection_labels
from ferkit.errors import ConfigError
from ferkit.hardware import cpu_flags
from ferkit.models.checkpoint import save_checkpoint
from ferkit.models.registry import create_model
from ferkit.models.temperature import flip_average
from ferkit.paths import BEST, CONFIG_YAML, CURVES_PNG, LAST, METRICS_CSV
from ferkit.train import distributed as D
from ferkit.train.distill import distilled_targets
from ferkit.train.ema import ModelEma
from ferkit.train.monitor import EpochStats, ProgressBar, TensorBoardLog, plot_curves, write_metrics
from ferkit.train.precision import autocast, resolve_amp
from ferkit.train.schedule import EarlyStopping, LRSchedule, build_optimizer
from ferkit.train.state import load_initial_weights, restore, seed_everything, train_state

logger = logging.getLogger(__name__)


class TrainingDiverged(ConfigError):
    """The loss became non-finite: the recipe (usually the learning rate) is unstable.

    A subclass so that a tuner can treat it as a bad trial rather than a broken config."""


@dataclass
class TrainResult:
    """What a finished (or early-stopped, or interrupted-by-callback) run produced."""

    run_dir: Path
    best_val_acc: float
    best_epoch: int
    epochs: int  # epochs completed, resumed ones included
    stopped_early: bool
    history: list[EpochStats]
    device: str
    amp: str
    model: torch.nn.Module = field(repr=False)  # the evaluated weights (EMA when enabled)

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST


def class_weights(counts: torch.Tensor, mode: str) -> torch.Tensor | None:
    """Loss weights from class counts: balanced = N / (K · n_c); sqrt = its square root."""
    if mode == "none":
        return None
    counts = counts.double()
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if mode == "sqrt":
        weights = weights.sqrt()
    return weights.float()


@torch.no_grad()
def evaluate(
    model,
    loader: BatchIterator,
    ctx: D.DistContext,
    amp_dtype,
    channels_last: bool,
    flip: bool = False,
):
    """(mean cross-entropy, accuracy) over the loader, summed across all ranks; with `flip`,
    of the probabilities averaged over each face and its mirror image (as `--tta flip`)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
    correct = torch.zeros((), dtype=torch.int64, device=ctx.device)
    count = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, amp_dtype):
            if flip:
                probs = flip_average(lambda batch: model(batch).float().softmax(1), x)
                logits = probs.clamp_min(1e-12).log()  # log-probabilities: same argmax, NLL
            else:
                logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    loss_sum, correct, count = D.all_reduce_sum([loss_sum.item(), correct.item(), count], ctx)
    return loss_sum / max(count, 1), correct / max(count, 1)


def _hard(target: torch.Tensor) -> torch.Tensor:
    """Class indices of a target batch: indices as they are, probabilities' top class."""
    return target.argmax(1) if target.is_floating_point() else target


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
) -> TrainResult:
    """Train `config.model` on `config.data.path`; write the run folder `config.out`.

    resume=True continues from `<out>/last.pt` exactly. overwrite=True starts afresh in a
    folder that already holds a run. `on_epoch(stats)` is called after each epoch's
    checkpoints are written; returning True stops the run there (e.g. Optuna pruning).
    """
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    ctx = D.setup(config.device)
    try:
        return _Run(config, ctx, resume=resume, overwrite=overwrite).fit(on_epoch)
    finally:
        D.teardown(ctx)


class _Run:
    """The state of one training run; `fit()` is the epoch loop. `state.train_state` and
    `state.restore` save and load its parts (model, ema, optimizer, schedule, scaler,
    stopper, augment, history, start_epoch) in last.pt."""

    def __init__(self, cfg: TrainConfig, ctx: D.DistContext, *, resume: bool, overwrite: bool):
        self.cfg, self.ctx = cfg, ctx
        self.run_dir = Path(cfg.out)
        last = self.run_dir / LAST
        if resume and not last.exists():
            raise ConfigError(f"cannot resume: {last} does not exist")
        if not resume and last.exists() and not overwrite:
            raise ConfigError(
                f"{self.run_dir} already holds a run; resume it (--resume) or overwrite "
                "it (--overwrite), or choose another --out"
            )
        device = ctx.device
        seed_everything(cfg.seed)
        targets = {"classes": cfg.data.classes, "blend": cfg.data.label_blend}
        self.train_split = load_split(
            cfg.data.path, cfg.data.train_split, device, subset=cfg.data.subset, seed=cfg.seed,
            labels=cfg.data.labels, **targets,
        )  # fmt: skip
        val_labels = selection_labels(cfg.data.labels, cfg.data.val_labels)
        val_split = load_split(
            cfg.data.path, cfg.data.val_split, device, labels=val_labels, **targets
        )
        if cfg.data.scale == "unit":  # pixels / 255: mean 0, std 1 in `normalize`
            unit = replace(self.train_split.preprocessing, mean=0.0, std=1.0)
            self.train_split.preprocessing = val_split.preprocessing = unit
        self.prep = self.train_split.preprocessing
        self.class_names = self.train_split.class_names
        self.amp_dtype = resolve_amp(cfg.amp, device)
        if cfg.distill.teacher:
            split = self.train_split
            split.targets = distilled_targets(
                cfg.distill, split.images, split.labels, split.targets, self.class_names,
                self.run_dir, amp=self.amp_dtype,
            )  # fmt: skip
        shard = {"rank": ctx.rank, "world_size": ctx.world_size}
        self.train_loader = BatchIterator(
            self.train_split, cfg.batch_size, shuffle=True, drop_last=True, seed=cfg.seed, **shard
        )
        self.val_loader = BatchIterator(val_split, cfg.eval_batch_size, **shard)

        self.channels_last = cfg.channels_last != "off"
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        model = create_model(
            cfg.model.name, num_classes=len(self.class_names), in_chans=1, **cfg.model.args
        )
        if cfg.init and not resume:
            load_initial_weights(model, cfg, self.class_names)
        self.model = model.to(device, memory_format=memory_format)
        torch.manual_seed(cfg.seed + 1009 * ctx.rank)  # per-rank dropout masks
        self.ddp = None
        if ctx.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.schedule = LRSchedule(
            self.optimizer,
            cfg.sched,
            epochs=cfg.epochs,
            steps_per_epoch=len(self.train_loader),
            base_lr=cfg.optim.lr,
        )
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        lo = float((0.0 - self.prep.mean) / self.prep.std)
        hi = float((1.0 - self.prep.mean) / self.prep.std)
        self.augment = Augmenter(
            cfg.augment, value_range=(lo, hi), seed=cfg.seed + 7919 * ctx.rank, device=device
        )
        weights = class_weights(self.train_split.class_counts(), cfg.class_weights)
        self.loss_weights = weights.to(device) if weights is not None else None
        self.stopper = EarlyStopping(cfg.patience)
        self.history: list[EpochStats] = []
        self.start_epoch = 1
        if resume:
            restore(self, last)
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / CONFIG_YAML)
        D.barrier(ctx)

    # ------------------------------------------------------------------ checkpoints
    def _eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _save(self, stats: EpochStats, improved: bool) -> None:
        state = train_state(self)  # collective under DDP: every rank takes part
        if not self.ctx.is_main:
            return
        common = dict(
            arch=self.cfg.model.name,
            arch_kwargs=dict(self.cfg.model.args),
            preprocessing=self.prep,
            class_names=self.class_names,
            config=self.cfg.to_dict(),
            epoch=stats.epoch,
            metrics={
                **stats.to_dict(),
                "best_val_acc": self.stopper.best,
                "best_epoch": self.stopper.best_epoch,
            },
        )
        model = self._eval_model()
        if improved:
            save_checkpoint(self.run_dir / BEST, model, train_state={}, **common)
        save_checkpoint(self.run_dir / LAST, model, train_state=state, **common)
        write_metrics(self.history, self.run_dir / METRICS_CSV)

    # ------------------------------------------------------------------ loop
    def _train_epoch(self, epoch: int, bar: ProgressBar) -> tuple[float, float, float]:
        net = self.ddp or self.model
        net.train()
        self.train_loader.set_epoch(epoch)
        batches = len(self.train_loader)
        bar.start_epoch(epoch, batches)
        device = self.ctx.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.train_loader, 1):
            x, y_a, y_b, lam = self.augment(x, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, self.amp_dtype):
                logits = net(x)
            logits = logits.float()
            loss = self._loss(logits, y_a)
            if lam < 1.0:
                loss = lam * loss + (1 - lam) * self._loss(logits, y_b)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step_batch()
            if self.ema is not None:
                self.ema.update(self.model)
            with torch.no_grad():
                pred = logits.argmax(1)
                hits = lam * (pred == _hard(y_a)).sum() + (1 - lam) * (pred == _hard(y_b)).sum()
                loss_sum += loss.detach().double() * len(y)
                correct += hits.double()
            seen += len(y)
            if step % 20 == 0 or step == batches:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.update(step, loss_sum.item() / seen, correct.item() / seen, rate)
        seconds = time.perf_counter() - start
        total_loss, total_correct, total_seen = D.all_reduce_sum(
            [loss_sum.item(), correct.item(), seen], self.ctx
        )
        if not math.isfinite(total_loss):
            raise TrainingDiverged(
                f"training diverged (non-finite loss) in epoch {epoch}; lower optim.lr "
                "or set grad_clip"
            )
        rate = total_seen / max(seconds, 1e-9)
        return total_loss / max(total_seen, 1), total_correct / max(total_seen, 1), rate

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy to class indices (B,) or to per-image probability vectors (B, C):
        the soft path of FER+ vote targets, blends and teacher (distillation) targets."""
        return F.cross_entropy(
            logits, target, weight=self.loss_weights, label_smoothing=self.cfg.label_smoothing
        )

    def fit(self, on_epoch) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        bar = ProgressBar(cfg.log.progress and ctx.is_main, cfg.epochs, quiet=not ctx.is_main)
        board = TensorBoardLog(self.run_dir) if cfg.log.tensorboard and ctx.is_main else None
        logger.log(
            logging.INFO if ctx.is_main else logging.DEBUG,
            "training %s on %s (%d process(es), amp=%s, channels_last=%s): %d train / %d val",
            cfg.model.name,
            ctx.device,
            ctx.world_size,
            self.amp_dtype,
            self.channels_last,
            len(self.train_split),
            len(self.val_loader.split),
        )
        try:
            for epoch in range(self.start_epoch, cfg.epochs + 1):
                if self.stopper.should_stop:
                    break
                started = time.perf_counter()
                train_loss, train_acc, rate = self._train_epoch(epoch, bar)
                D.broadcast_buffers(self.model, ctx)
                if self.ema is not None:
                    D.broadcast_buffers(self.ema.module, ctx)
                lr = self.schedule.lr
                val_loss, val_acc = evaluate(
                    self._eval_model(),
                    self.val_loader,
                    ctx,
                    self.amp_dtype,
                    self.channels_last,
                    flip=cfg.val_tta == "flip",
                )
                self.schedule.step_epoch(val_acc)
                improved = self.stopper.update(val_acc, epoch)
                stats = EpochStats(
                    epoch,
                    lr,
                    train_loss,
                    train_acc,
                    val_loss,
                    val_acc,
                    rate,
                    time.perf_counter() - started,
                    cpu_flags() if ctx.device.type == "cpu" else torch.cuda.get_device_name(),
                )
                self.history.append(stats)
                self._save(stats, improved)
                bar.end_epoch(stats)
                if board is not None:
                    board.log(stats)
                stop = bool(on_epoch(stats)) if on_epoch is not None else False
                if D.broadcast_flag(stop, ctx):
                    break
        finally:
            bar.close()
            if board is not None:
                board.close()
        if ctx.is_main and self.history:
            plot_curves(self.history, self.run_dir / CURVES_PNG)
        D.barrier(ctx)
        return TrainResult(
            run_dir=self.run_dir,
            best_val_acc=self.stopper.best if self.history else float("nan"),
            best_epoch=self.stopper.best_epoch,
            epochs=len(self.history),
            stopped_early=self.stopper.should_stop and len(self.history) < cfg.epochs,
            history=list(self.history),
            device=str(ctx.device),
            amp=str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "off",
            model=self._eval_model(),
        )
