"""What a run tells the user: per-epoch metrics, curves, a live progress bar, TensorBoard.

`metrics.csv` is rewritten (atomically) from the whole history after every epoch, so a
resumed run carries the earlier epochs forward and the file always matches `last.pt`.
matplotlib, rich's live display and TensorBoard are imported only where used.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ferkit.files import atomic_open, save_figure

logger = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """One row of metrics.csv."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    images_per_s: float
    seconds: float
    cpu: str = ""  # the CPU's relevant flags (ferkit.hardware): a resumed run may change CPU

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (
            f"epoch {self.epoch}: lr {self.lr:.3g}  train loss {self.train_loss:.4f} "
            f"acc {self.train_acc:.2%}  val loss {self.val_loss:.4f} acc {self.val_acc:.2%}  "
            f"{self.images_per_s:.0f} img/s  {self.seconds:.1f}s"
        )


COLUMNS = tuple(EpochStats.__dataclass_fields__)


def write_metrics(history: list[EpochStats], path: Path) -> None:
    with atomic_open(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for stats in history:
            writer.writerow(stats.to_dict())


def _column(key: str, value: str):
    if key == "cpu":
        return value
    return int(value) if key == "epoch" else float(value)


def read_metrics(path: str | Path) -> list[EpochStats]:
    """The epochs of a metrics.csv (for plots and reports)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        EpochStats(**{k: _column(k, v) for k, v in row.items() if k in COLUMNS}) for row in rows
    ]


def plot_curves(history: list[EpochStats], path: Path) -> Path:
    """Loss and accuracy per epoch (train vs val) and the learning rate, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [s.epoch for s in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(epochs, [s.train_loss for s in history], label="train")
    axes[0].plot(epochs, [s.val_loss for s in history], label="val")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [100 * s.train_acc for s in history], label="train")
    axes[1].plot(epochs, [100 * s.val_acc for s in history], label="val")
    axes[1].set_title("accuracy (%)")
    axes[2].plot(epochs, [s.lr for s in history])
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


class TensorBoardLog:
    """Scalars per epoch under the run folder, when `tensorboard` is installed."""

    def __init__(self, run_dir: Path):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("log.tensorboard is on but tensorboard is not installed; skipping it")
            return
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, stats: EpochStats) -> None:
        if self.writer is not None:
            for key, value in stats.to_dict().items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, stats.epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class ProgressBar:
    """A rich bar per epoch with live loss, accuracy and images/s.

    Disabled, or where the output is not a terminal, it logs one line per epoch instead: a
    bar redirected to a log file would only be drawn when the run ends, leaving a run of
    hours silent. `quiet` (DDP ranks other than 0) does neither.
    """

    def __init__(self, enabled: bool, epochs: int, quiet: bool = False):
        self.epochs = epochs
        self.quiet = quiet
        self.progress = None
        self.task = None
        if enabled:
            from rich.console import Console

            enabled = Console().is_terminal
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
            )
            self.progress.start()

    def start_epoch(self, epoch: int, batches: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(
                f"epoch {epoch}/{self.epochs}", total=batches, stats=""
            )

    def update(self, done: int, loss: float, acc: float, images_per_s: float) -> None:
        if self.progress is not None:
            stats = f"loss {loss:.4f}  acc {acc:.2%}  {images_per_s:.0f} img/s"
            self.progress.update(self.task, completed=done, stats=stats)

    def end_epoch(self, stats: EpochStats) -> None:
        if self.progress is not None:
            summary = (
                f"loss {stats.train_loss:.4f}  acc {stats.train_acc:.2%}  "
                f"val loss {stats.val_loss:.4f}  val acc {stats.val_acc:.2%}  "
                f"{stats.images_per_s:.0f} img/s"
            )
            self.progress.update(self.task, stats=summary)
        elif not self.quiet:
            logger.info(stats.line())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
