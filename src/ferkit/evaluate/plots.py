"""Figures: class distribution, sample grids (and, with evaluation, confusion matrices,
curves and reliability diagrams). matplotlib is imported inside each function with the
non-interactive Agg backend, so importing this module costs nothing and needs no display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_class_distribution(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """Grouped bars: images per class, one bar per split (shares in the labels)."""
    plt = _pyplot()
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    x = np.arange(len(classes))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, split in enumerate(splits):
        values = [counts[split][c] for c in classes]
        total = sum(values) or 1
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, [f"{100 * v / total:.0f}%" for v in values], fontsize=7)
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.set_title("class distribution per split")
    ax.legend()
    return _save(fig, path)


def plot_sample_grid(store, path: Path, per_class: int = 8, split: str = "train") -> Path:
    """A grid of the first `per_class` images of each class in one split of a store."""
    plt = _pyplot()
    images, labels = store.split_arrays(split)
    names = store.class_names
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class, len(names) * 1.05))
    for row, name in enumerate(names):
        picks = np.flatnonzero(labels == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(picks):
                ax.imshow(images[picks[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    return _save(fig, path)
