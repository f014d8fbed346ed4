"""Per-track smoothing: moving average and EMA reduce flicker on a noisy sequence."""

import numpy as np
import pytest

from ferkit.errors import ConfigError
from ferkit.infer.smoothing import (
    ExponentialAverage,
    MovingAverage,
    SmoothingConfig,
    TrackSmoother,
    flicker,
    label_changes,
)


def _noisy_sequence(frames=300, seed=0):
    """A face that is 'happy' then 'sad', with classifier noise that flips the argmax often."""
    rng = np.random.default_rng(seed)
    truth = np.where(np.arange(frames) < frames // 2, 3, 4)
    base = np.full((frames, 7), 0.08)
    base[np.arange(frames), truth] = 0.3
    noisy = np.clip(base + rng.normal(0, 0.12, size=base.shape), 1e-3, None)
    return noisy / noisy.sum(axis=1, keepdims=True), truth


@pytest.mark.parametrize("config", [SmoothingConfig("ema", alpha=0.3), SmoothingConfig("mean", 8)])
def test_smoothing_reduces_label_changes(config):
    probs, truth = _noisy_sequence()
    smoother = TrackSmoother(config)
    smoothed = np.array([smoother.update(1, p) for p in probs])
    raw_labels, smooth_labels = probs.argmax(1), smoothed.argmax(1)
    assert label_changes(smooth_labels) * 4 < label_changes(raw_labels)
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0)
    # Smoothing must not lose the signal: it agrees with the truth more often.
    assert (smooth_labels == truth).mean() > (raw_labels == truth).mean()


def test_filters_and_flicker():
    ma = MovingAverage(window=2)
    ma.update(np.array([1.0, 0.0]))
    np.testing.assert_allclose(ma.update(np.array([0.0, 1.0])), [0.5, 0.5])
    ema = ExponentialAverage(alpha=0.25)
    ema.update(np.array([1.0, 0.0]))
    np.testing.assert_allclose(ema.update(np.array([0.0, 1.0])), [0.75, 0.25])
    assert flicker(["a", "b", "a", "a", "a"], fps=4.0) == 2.0  # 2 changes over 1 s
    assert flicker(["a"], fps=30) == 0.0


def test_tracks_are_independent_and_pruned():
    smoother = TrackSmoother(SmoothingConfig("mean", window=10))
    smoother.update(1, np.array([1.0, 0.0]))
    np.testing.assert_allclose(smoother.update(2, np.array([0.0, 1.0])), [0.0, 1.0])
    smoother.prune([2])
    np.testing.assert_allclose(smoother.update(1, np.array([0.0, 1.0])), [0.0, 1.0])


def test_config_validates():
    with pytest.raises(ConfigError, match="unknown"):
        SmoothingConfig("median")
    with pytest.raises(ConfigError):
        SmoothingConfig("ema", alpha=0.0)
