"""Calibration: does a predicted 70 % come true 70 % of the time?

- `reliability_bins` / `expected_calibration_error`: confidence (top probability) against
  accuracy in equal-width bins; ECE is their gap weighted by how many predictions fall in
  each bin (Guo et al. 2017, "On Calibration of Modern Neural Networks").
- `fit_temperature` / `apply_temperature`: temperature scaling, one scalar T that divides
  the logits. It never changes the predicted class, only how confident the model claims to
  be. It works on probabilities from any backend, since softmax(log p / T) equals
  softmax(z / T) for the logits z behind p.
- `checkpoint_temperature` / `store_temperature` (`apply_temperature`, `as_probs` and
  `checkpoint_temperature` live in `ferkit.models.temperature`, below the recognition
  pipeline, and are re-exported here): T is fitted on val (PublicTest, never the
  reported test split) and kept in the checkpoint's `metrics["temperature"]`, so every later
  user of the checkpoint gets the calibrated probabilities without another file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.errors import ModelError
from ferkit.models.temperature import EPS, apply_temperature, as_probs, checkpoint_temperature

N_BINS = 15
_BETA_RANGE = (1e-2, 1e2)  # inverse temperature searched in [1/100, 100]


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict:
    """Per equal-width confidence bin: mean confidence, accuracy and count (JSON-safe).

    Empty bins report None for confidence and accuracy.
    """
    probs = as_probs(probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin k holds confidences in (edges[k], edges[k+1]]; confidence 0 cannot occur.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, mean_acc = conf_sum / count, acc_sum / count
    return {
        "edges": edges.tolist(),
        "confidence": [None if c == 0 else float(v) for c, v in zip(count, mean_conf)],
        "accuracy": [None if c == 0 else float(v) for c, v in zip(count, mean_acc)],
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE: Σ_bins (n_bin / N) · |accuracy_bin − confidence_bin|, in [0, 1]."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(bins["count"])
    if total == 0:
        return 0.0
    gaps = [
        n * abs(a - c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"]) if n
    ]
    return float(sum(gaps) / total)


def _nll(log_probs: np.ndarray, labels: np.ndarray, beta: float) -> float:
    z = beta * log_probs
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of `labels` (fit it on val).

    NLL is convex in the inverse temperature β = 1/T, so a bounded scalar search over
    log β finds the optimum; T is searched in [0.01, 100].
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("cannot fit a temperature on zero examples")
    log_probs = np.log(np.clip(as_probs(probs), EPS, None))
    lo, hi = np.log(_BETA_RANGE[0]), np.log(_BETA_RANGE[1])
    result = minimize_scalar(
        lambda log_beta: _nll(log_probs, labels, float(np.exp(log_beta))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(1.0 / np.exp(result.x))


def store_temperature(path: str | Path, temperature: float, fitted_on: dict) -> Path:
    """Write `temperature` (and what it was fitted on) into a checkpoint's metrics.

    The checkpoint is saved back by its own `Checkpoint.save` (atomically), keeping its
    weights, config, epoch and any train_state, so a run stays resumable.
    """
    from ferkit.models.checkpoint import load_checkpoint

    path = Path(path)
    checkpoint = load_checkpoint(path)
    if not path.stat().st_mode & 0o200:
        raise ModelError(f"{path}: read-only checkpoint; cannot store its temperature")
    checkpoint.metrics = {
        **(checkpoint.metrics or {}),
        "temperature": float(temperature),
        "temperature_fitted_on": fitted_on,
    }
    return checkpoint.save(path)


__all__ = [
    "N_BINS",
    "apply_temperature",
    "as_probs",
    "checkpoint_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "store_temperature",
]
