"""Classification metrics from labels and predicted probabilities, through scikit-learn.

`classification_metrics` returns one JSON-safe dict: accuracy with a bootstrap 95 %
interval, balanced accuracy, top-2 accuracy, macro and weighted precision/recall/F1,
per-class precision/recall/F1/support, the classification report, the confusion matrix,
the most-confused pairs, negative log-likelihood and expected calibration error with its
reliability bins. Every class of the model is listed even when a split lacks it, so
reports of different splits and folders line up; macro averages (and balanced accuracy, the
macro recall) are taken over the classes present in the labels, named in `macro.classes`,
so a folder without, say, neutral faces is not marked down by a zero for a class it lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ferkit.evaluate.calibration import (
    N_BINS,
    as_probs,
    expected_calibration_error,
    reliability_bins,
)

BOOTSTRAP = 1000


def bootstrap_accuracy_ci(
    correct: np.ndarray, n_resamples: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `correct` (one bool per example).

    It answers "how much would accuracy move on another test set of this size?": two models
    whose intervals overlap widely are not shown apart by this test set.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if len(correct) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // len(correct))  # bounded memory for large sets
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        picks = rng.integers(0, len(correct), size=(stop - start, len(correct)))
        means[start:stop] = correct[picks].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def most_confused(confusion: np.ndarray, class_names: Sequence[str], top: int = 5) -> list[dict]:
    """The largest off-diagonal cells: true class, predicted class, count and the share of
    the true class's examples that went there."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1)
    pairs = [
        (int(confusion[i, j]), i, j)
        for i in range(len(class_names))
        for j in range(len(class_names))
        if i != j and confusion[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [
        {
            "true": class_names[i],
            "predicted": class_names[j],
            "count": count,
            "share_of_true": count / int(support[i]),
        }
        for count, i, j in pairs[:top]
    ]


def classification_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bins: int = N_BINS,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """Every metric of one set of predictions (see the module docstring)."""
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(labels), k):
        raise ValueError(f"probabilities {probs.shape} do not match {len(labels)} labels × {k}")
    if len(labels) == 0:
        raise ValueError("no examples to evaluate")
    probs = as_probs(probs)
    pred = probs.argmax(axis=1)
    classes = list(range(k))
    names = list(class_names)

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=classes, zero_division=0
    )
    present = np.unique(labels).tolist()
    averages = {}
    for average, over in (("macro", present), ("weighted", classes)):
        p, r, f, _ = precision_recall_fscore_support(
            labels, pred, labels=over, average=average, zero_division=0
        )
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    averages["macro"]["classes"] = [names[i] for i in present]
    confusion = confusion_matrix(labels, pred, labels=classes)
    # balanced accuracy: the mean recall over the classes present (sklearn's definition)
    balanced = averages["macro"]["recall"] if len(present) > 1 else float("nan")
    top2 = float(top_k_accuracy_score(labels, probs, k=2, labels=classes)) if k > 2 else 1.0
    accuracy = float(accuracy_score(labels, pred))
    lo, hi = bootstrap_accuracy_ci(pred == labels, bootstrap, seed)
    return {
        "n": int(len(labels)),
        "accuracy": accuracy,
        "accuracy_ci95": [lo, hi],
        "balanced_accuracy": balanced,
        "top2_accuracy": top2,
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "classification_report": classification_report(
            labels, pred, labels=classes, target_names=names, digits=4, zero_division=0
        ),
        "confusion": confusion.astype(int).tolist(),
        "most_confused": most_confused(confusion, names),
        "nll": float(log_loss(labels, probs, labels=classes)),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "reliability": reliability_bins(probs, labels, n_bins),
    }
