"""The weighted-ensemble benchmark's helpers (benchmarks/ensemble_weights.py) on tiny cases."""

import numpy as np
import pytest

from conftest import load_script

ensemble_weights = load_script("ensemble_weights", folder="benchmarks")
combine, simplex_grid = ensemble_weights.combine, ensemble_weights.simplex_grid
fit_log_bias = ensemble_weights.fit_log_bias


def test_simplex_grid_holds_every_weighting_in_steps_and_nothing_else():
    grid = simplex_grid(3, 0.1)
    assert len(grid) == 66  # C(10 + 2, 2) ways to share 10 tenths among 3 members
    assert len(set(grid)) == len(grid)
    assert all(min(w) >= 0 and sum(w) == pytest.approx(1.0) for w in grid)
    assert {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.3, 0.3, 0.4)} <= set(grid)


def test_geometric_mean_can_overrule_the_arithmetic_one():
    """A class one member nearly rules out loses under the product of experts."""
    a = np.array([[0.7, 0.05, 0.25]])
    b = np.array([[0.1, 0.6, 0.3]])
    assert combine([a, b], (0.5, 0.5), geometric=False).argmax(1).tolist() == [0]
    assert combine([a, b], (0.5, 0.5), geometric=True).argmax(1).tolist() == [2]


@pytest.mark.parametrize("geometric", [False, True])
def test_all_weight_on_one_member_is_that_member(geometric):
    a = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    b = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    assert combine([a, b], (1.0, 0.0), geometric).argmax(1).tolist() == [0, 2]
    assert combine([a, b], (0.0, 1.0), geometric).argmax(1).tolist() == [1, 0]


def miscalibrated(true_bias, faces=20_000, seed=0):
    """Labels drawn from softmax(logits) and a model's scores that lack `true_bias` in them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (faces, len(true_bias)))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (truth.cumsum(1) > rng.random((faces, 1))).argmax(1)
    scores = np.exp(logits - true_bias)
    return scores / scores.sum(1, keepdims=True), labels


def test_the_fitted_bias_is_the_one_the_scores_lack():
    true_bias = np.array([0.0, 1.0, -0.8])
    scores, labels = miscalibrated(true_bias)
    np.testing.assert_allclose(fit_log_bias(scores, labels), true_bias, atol=0.1)
    assert ensemble_weights.cross_validated_gain(scores, labels) > 0.02


def test_calibrated_scores_need_no_bias():
    scores, labels = miscalibrated(np.zeros(3))
    np.testing.assert_allclose(fit_log_bias(scores, labels), 0.0, atol=0.1)
    assert abs(ensemble_weights.cross_validated_gain(scores, labels)) < 0.01
