"""Evaluation metrics equal hand-computed values on small known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ferkit.evaluate.calibration import expected_calibration_error, reliability_bins
from ferkit.evaluate.metrics import bootstrap_accuracy_ci, classification_metrics, most_confused

NAMES = ("a", "b", "c")

# 6 examples, 3 classes. Predictions (argmax): a a | b c | c b  → 4 of 6 correct.
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # a → a
        [0.5, 0.4, 0.1],  # a → a
        [0.2, 0.6, 0.2],  # b → b
        [0.1, 0.3, 0.6],  # b → c (b second)
        [0.2, 0.2, 0.6],  # c → c
        [0.1, 0.5, 0.4],  # c → b (c second)
    ]
)


@pytest.fixture(scope="module")
def metrics():
    return classification_metrics(LABELS, PROBS, NAMES, bootstrap=200)


def test_accuracy_balanced_and_top2(metrics):
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # recalls: a 2/2, b 1/2, c 1/2
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # the true class is in the top two everywhere: b→c has b second, c→b has c second
    assert metrics["top2_accuracy"] == pytest.approx(1.0)


def test_per_class_and_averages(metrics):
    per = metrics["per_class"]
    # a: predicted twice, both right; b: predicted twice (one right); c: twice (one right)
    assert per["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert per["b"]["precision"] == pytest.approx(0.5) and per["b"]["recall"] == 0.5
    assert per["c"]["f1"] == pytest.approx(0.5)
    assert metrics["macro"]["f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert metrics["weighted"]["recall"] == pytest.approx(4 / 6)
    assert "precision" in metrics["classification_report"]


def test_macro_averages_cover_the_classes_present_and_say_which(recwarn):
    """A folder without any 'c' faces: macro-F1 is the mean over a and b, not a zero for c
    averaged in, and sklearn has nothing to warn about."""
    labels, probs = LABELS[:4], PROBS[:4]  # a a | b c: c is predicted once, never true
    result = classification_metrics(labels, probs, NAMES, bootstrap=20)
    assert result["macro"]["classes"] == ["a", "b"]
    # a: P 1, R 1, F1 1; b: P 1 (its one prediction is right), R 0.5, F1 2/3
    assert result["macro"]["f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert result["per_class"]["c"]["support"] == 0  # still listed
    assert not [w for w in recwarn if "sklearn" in str(w.filename)]


def test_confusion_and_most_confused(metrics):
    assert metrics["confusion"] == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    pairs = metrics["most_confused"]
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        ("b", "c", 1),
        ("c", "b", 1),
    ]
    assert pairs[0]["share_of_true"] == pytest.approx(0.5)


def test_nll_is_mean_negative_log_probability_of_the_truth(metrics):
    truth = PROBS[np.arange(6), LABELS]
    assert metrics["nll"] == pytest.approx(-np.mean(np.log(truth)))


def test_classes_missing_from_the_data_are_still_listed():
    labels = np.array([0, 0, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    metrics = classification_metrics(labels, probs, NAMES, bootstrap=10)
    assert metrics["per_class"]["c"]["support"] == 0
    assert np.asarray(metrics["confusion"]).shape == (3, 3)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="do not match"):
        classification_metrics(LABELS, PROBS[:, :2], NAMES)


def test_bootstrap_interval():
    correct = np.array([True] * 70 + [False] * 30)
    lo, hi = bootstrap_accuracy_ci(correct, 2000, seed=1)
    assert lo < 0.7 < hi
    assert (lo, hi) == bootstrap_accuracy_ci(correct, 2000, seed=1)  # seeded
    # binomial standard error √(0.7·0.3/100) ≈ 0.046: the 95 % interval spans ~±0.09
    assert 0.12 < hi - lo < 0.24
    assert bootstrap_accuracy_ci(np.ones(10, bool), 100) == (1.0, 1.0)


def test_expected_calibration_error_by_hand():
    # two predictions at 0.9 (one right), two at 0.6 (both right), with 10 bins:
    # bin (0.8, 0.9]: |0.5 − 0.9| · 2/4 ; bin (0.5, 0.6]: |1.0 − 0.6| · 2/4
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert sum(bins["count"]) == 4
    assert bins["count"][8] == 2 and bins["count"][5] == 2
    assert bins["accuracy"][8] == pytest.approx(0.5)
    assert bins["confidence"][0] is None  # empty bins stay empty


def test_perfectly_calibrated_confident_predictions_have_zero_ece():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0


def test_most_confused_orders_by_count():
    confusion = np.array([[5, 3, 0], [1, 5, 0], [4, 0, 1]])
    pairs = most_confused(confusion, NAMES, top=2)
    assert [(p["true"], p["predicted"]) for p in pairs] == [("c", "a"), ("a", "b")]
    assert math.isclose(pairs[0]["share_of_true"], 0.8)
