"""A tiny learnable FER-like store for the training tests.

Class k is horizontal stripes of its own period (random phase, contrast and noise), so a
small CNN separates the classes within a few epochs, and the patterns survive the default
augmentation (horizontal flips, small shifts, rotations and zooms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.data.store import write_store

PERIODS = (4, 6, 8, 11, 15, 20, 28)


def stripes(labels: np.ndarray, seed: int) -> np.ndarray:
    """48×48 uint8 images: stripes of period PERIODS[label], with noise."""
    rng = np.random.default_rng(seed)
    rows = np.arange(48, dtype=np.float64)[None, :, None]
    period = np.asarray(PERIODS, dtype=np.float64)[labels][:, None, None]
    phase = rng.uniform(0, 2 * np.pi, size=(len(labels), 1, 1))
    contrast = rng.uniform(50, 90, size=(len(labels), 1, 1))
    images = 128 + contrast * np.sin(2 * np.pi * rows / period + phase)
    images = images + rng.normal(0, 20, size=(len(labels), 48, 48))
    return np.clip(images, 0, 255).astype(np.uint8)


def learnable_store(path: Path, per_class: tuple[int, int, int] = (24, 8, 4), seed: int = 0):
    """Write a store with `per_class` train/val/test images per class; returns its path."""
    labels, splits = [], []
    for split, count in enumerate(per_class):
        for k in range(len(PERIODS)):
            labels += [k] * count
            splits += [split] * count
    labels = np.asarray(labels)
    return write_store(path, stripes(labels, seed), labels, np.asarray(splits), force=True)
