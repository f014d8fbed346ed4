"""Weighted ensembles against the plain mean: chosen on PublicTest, reported on PrivateTest.

The shipped `ensemble` averages its members' probabilities with equal weights. This asks
whether other weights (a grid on the simplex) or the geometric mean (mean of log
probabilities) would do better, with the same discipline as every shipped choice: the
combination is picked on PublicTest (val), and PrivateTest (test) is only reported.
Each member runs as the ensemble runs it (its shipped form, TTA and temperature) on the
Recognizer's crops (equalised), clean and camera-like (`_common.camera_like`), so the
camera-like drop of the robustness target is reported beside each combination.

Rows: the plain mean (what ships), the best arithmetic and the best geometric combination
on val (ties go to the more even weights), and the plain mean with a per-class bias on its
log-probabilities fitted on val (the NLL's minimum: class priors the training left off; with
its gain in a 2-fold cross-validation within val, the honest estimate of what it adds), each
with val/test clean, camera-like and drop.

    python benchmarks/ensemble_weights.py [--ensemble ensemble] [--step 0.1] [--threads 2]

`--ensemble` takes a shipped ensemble's name or an `*.ensemble.json` (e.g. a candidate set
written by `ferkit ship A B C --name ensemble --int8 --dest DIR`). Writes
benchmarks/results/ensemble_weights.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from _common import camera_like, report, store_or_exit
from ferkit.data.store import open_store
from ferkit.infer.recognizer import Recognizer, set_threads
from ferkit.models.checkpoint import read_ensemble, resolve_ensemble
from ferkit.paths import DEFAULT_STORE

_FLOOR = 1e-8  # probabilities below it count as it in the geometric mean


def simplex_grid(members: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of `members` non-negative multiples of `step` summing to one."""
    ticks = round(1 / step)
    return [
        tuple(count / ticks for count in counts)
        for counts in itertools.product(range(ticks + 1), repeat=members)
        if sum(counts) == ticks
    ]


def combine(probs: list[np.ndarray], weights, geometric: bool) -> np.ndarray:
    """Scores whose argmax is the combination's prediction (unnormalised)."""
    if geometric:
        return sum(w * np.log(np.clip(p, _FLOOR, 1.0)) for w, p in zip(weights, probs))
    return sum(w * p for w, p in zip(weights, probs))


def fit_log_bias(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The per-class bias b minimising the NLL of softmax(log(scores) + b), b[0] fixed at 0
    (a shift of all classes changes nothing). Convex: L-BFGS finds the one minimum."""
    logp, rows = np.log(np.clip(scores, _FLOOR, None)), np.arange(len(labels))

    def nll_and_grad(free):
        z = log_softmax(logp + np.concatenate([[0.0], free]), axis=1)
        grad = np.exp(z)
        grad[rows, labels] -= 1.0
        return -z[rows, labels].mean(), grad.mean(0)[1:]

    fit = minimize(nll_and_grad, np.zeros(scores.shape[1] - 1), jac=True, method="L-BFGS-B")
    return np.concatenate([[0.0], fit.x])


def cross_validated_gain(scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Accuracy gained by `fit_log_bias` on faces it was not fitted on: val split in two
    halves (fixed seed), fitted on each and scored on the other."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    gained = 0
    for fit_on, score_on in (halves, halves[::-1]):
        bias = fit_log_bias(scores[fit_on], labels[fit_on])
        logp, truth = np.log(np.clip(scores[score_on], _FLOOR, None)), labels[score_on]
        gained += ((logp + bias).argmax(1) == truth).sum() - (logp.argmax(1) == truth).sum()
    return float(gained / len(labels))


def member_probs(rec: Recognizer, faces: np.ndarray) -> list[np.ndarray]:
    """Each member's shipped-form probabilities on the Recognizer's crops of `faces`."""
    crops = np.stack([rec.crop(face, None) for face in faces])
    return [member.predict_proba(crops) for member in rec.classifier.members]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", default="ensemble")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--step", type=float, default=0.1, help="weight grid step")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    store_or_exit(args.store)
    spec = resolve_ensemble(args.ensemble)
    if spec is None:
        raise SystemExit(f"{args.ensemble} is not an ensemble (a shipped name or *.ensemble.json)")
    members = [Path(m).name for m in read_ensemble(spec)["members"]]
    set_threads(args.threads)
    rec = Recognizer(args.ensemble, detector="none")
    probs, labels = {}, {}
    with open_store(args.store) as store:
        for split in ("val", "test"):
            faces, labels[split] = store.split_arrays(split)
            probs[split, "clean"] = member_probs(rec, faces)
            probs[split, "camera"] = member_probs(rec, camera_like(faces))

    def accuracy(split, kind, weights, geometric, bias=0.0) -> float:
        scores = combine(probs[split, kind], weights, geometric)
        if np.any(bias):  # (a plain mean's scores are probabilities)
            scores = np.log(np.clip(scores, _FLOOR, None)) + bias
        return float((scores.argmax(1) == labels[split]).mean())

    def row(label, weights, geometric, bias=0.0) -> dict:
        result = {"combination": label, "weights": [round(w, 3) for w in weights]}
        for split in ("val", "test"):
            clean = accuracy(split, "clean", weights, geometric, bias)
            camera = accuracy(split, "camera", weights, geometric, bias)
            result |= {
                f"{split} clean": clean,
                f"{split} camera-like": camera,
                f"{split} drop (points)": 100 * (clean - camera),
            }
        return result

    equal = (1 / len(members),) * len(members)
    grid = simplex_grid(len(members), args.step)
    rows = [row("mean (shipped)", equal, False)]
    for geometric, label in ((False, "best weighted mean on val"), (True, "best geometric on val")):
        # Highest val; among ties the weights closest to equal (the least fitted).
        best = max(
            grid,
            key=lambda w: (
                accuracy("val", "clean", w, geometric),
                -float(np.abs(np.subtract(w, equal)).sum()),
            ),
        )
        rows.append(row(label, best, geometric))
    mean_val = combine(probs["val", "clean"], equal, geometric=False)
    bias = fit_log_bias(mean_val, labels["val"])
    rows.append(row("mean + per-class bias fitted on val", equal, False, bias))
    cv_gain = 100 * cross_validated_gain(mean_val, labels["val"])
    print(f"per-class bias {np.round(bias, 3).tolist()}; 2-fold cross-validated gain on val "
          f"{cv_gain:+.2f} points")  # fmt: skip
    report(
        "ensemble_weights", rows, ensemble=args.ensemble, members=members,
        step=args.step, threads=args.threads, chosen_on="val (PublicTest), clean faces",
        bias=bias.round(4).tolist(), bias_val_cross_validated_gain_points=cv_gain,
    )  # fmt: skip


if __name__ == "__main__":
    main()
