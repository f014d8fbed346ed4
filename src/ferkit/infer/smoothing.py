"""Temporal smoothing of emotion probabilities, one smoother per tracked face.

A frame-by-frame classifier flickers: the same face reads "sad, neutral, sad, fear" on
four consecutive frames because of tiny changes in crop, light and compression. Averaging
each track's probabilities over time removes most of that flicker at the cost of a short
lag. Two filters are offered: a moving average over the last `window` frames and an
exponential moving average with weight `alpha` on the newest frame. `flicker()` measures
the effect as label changes per second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ferkit.errors import ConfigError

METHODS = ("ema", "mean", "none")
MAX_WINDOW = 1000  # frames (over half a minute at 30 fps); a longer mean is no smoothing


@dataclass(frozen=True)
class SmoothingConfig:
    """`method`: "mean" (moving average over `window` frames), "ema" (exponential, weight
    `alpha` on the newest frame) or "none".

    Default "mean" over 5 frames: on still FER-2013 test faces under camera jitter it cut
    the shipped model's label changes from 3.69 to 0.65 per second (EMA with alpha 0.4:
    1.20) and raised per-frame accuracy from 53.9 % to 55.0 %, with a lag of 2 frames
    (benchmarks/recognize.py).
    """

    method: str = "mean"
    window: int = 5
    alpha: float = 0.4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"smoothing method {self.method!r} unknown; use one of {METHODS}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"smoothing window must be in 1..{MAX_WINDOW}, got {self.window}")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"smoothing alpha must be in (0, 1], got {self.alpha}")


class MovingAverage:
    """Mean of the last `window` vectors passed to `update`."""

    def __init__(self, window: int = 5) -> None:
        self._history: deque[np.ndarray] = deque(maxlen=window)

    def update(self, x: np.ndarray) -> np.ndarray:
        self._history.append(np.asarray(x, dtype=np.float64))
        return np.mean(self._history, axis=0)


class ExponentialAverage:
    """s ← alpha·x + (1 − alpha)·s, starting from the first vector."""

    def __init__(self, alpha: float = 0.4) -> None:
        self.alpha = alpha
        self._state: np.ndarray | None = None

    def update(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        self._state = x if self._state is None else self.alpha * x + (1 - self.alpha) * self._state
        return self._state


class Identity:
    """No smoothing: returns its input (keeps one code path for "none")."""

    def update(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)


def make_filter(config: SmoothingConfig) -> MovingAverage | ExponentialAverage | Identity:
    """A fresh filter for one track, as the config says."""
    if config.method == "ema":
        return ExponentialAverage(config.alpha)
    if config.method == "mean":
        return MovingAverage(config.window)
    return Identity()


class TrackSmoother:
    """One filter per track id; filters of tracks that ended are dropped by `prune`."""

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._filters: dict[int, MovingAverage | ExponentialAverage | Identity] = {}

    def update(self, track_id: int, probs: np.ndarray) -> np.ndarray:
        """Smoothed probabilities of `track_id` after adding this frame's `probs`."""
        if track_id not in self._filters:
            self._filters[track_id] = make_filter(self.config)
        smoothed = self._filters[track_id].update(probs)
        return smoothed / smoothed.sum()

    def prune(self, live_ids: Iterable[int]) -> None:
        live = set(live_ids)
        for track_id in [t for t in self._filters if t not in live]:
            del self._filters[track_id]


def label_changes(labels: Sequence[str | int]) -> int:
    """How many times consecutive labels differ."""
    return sum(1 for a, b in zip(labels, labels[1:], strict=False) if a != b)


def flicker(labels: Sequence[str | int], fps: float) -> float:
    """Label changes per second of a track's label sequence sampled at `fps`."""
    if len(labels) < 2:
        return 0.0
    return label_changes(labels) / ((len(labels) - 1) / fps)
