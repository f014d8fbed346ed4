"""What a label is: FER-2013's, or one read from the FER+ votes — the one place that decides.

    majority(votes)          the FER+ paper's majority rule: an emotion, unknown or not-a-face
    agreement(labels, votes) FER-2013 label × FER+ majority counts (`ferkit data inspect`)
    make_targets(...)        the training targets of each `data.labels` mode:

        fer2013            the store's labels (7 classes)
        ferplus_majority   FER+ majority labels; unknown, not-a-face, no votes and classes
                           outside `classes` are left out (the paper's majority mode)
        ferplus_votes      cross-entropy to the FER+ vote distribution (the paper's best mode)
        blend              (1 - w)·FER-2013 one-hot + w·FER+ vote distribution; images
                           without a usable distribution keep their one-hot target

Votes arrive in the votes files' column order (`ferplus.VOTE_COLUMNS`) and leave in
class order (`ferkit.labels.FERPLUS_EMOTIONS`, then unknown, not-a-face). Soft targets are
per-image probability vectors: the trainer takes them, mixes them (mixup/cutmix) and
scores them exactly as it would a teacher's probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferkit.errors import ConfigError
from ferkit.labels import CLASS_SETS, EMOTIONS, FERPLUS_EMOTIONS

# vote column (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
# unknown, NF) → majority code: an index of FERPLUS_EMOTIONS, then UNKNOWN, NOT_A_FACE
UNKNOWN, NOT_A_FACE, NO_VOTES = 8, 9, 10
VOTE_CODES = np.array([6, 3, 5, 4, 0, 1, 2, 7, UNKNOWN, NOT_A_FACE])
MAJORITY_NAMES: tuple[str, ...] = (*FERPLUS_EMOTIONS, "unknown", "not_a_face", "no_votes")
FERPLUS_LABELS = ("ferplus_majority", "ferplus_votes", "blend")


def class_votes(votes: np.ndarray) -> np.ndarray:
    """(N, 10) votes → float (N, 10) in code order with single votes removed: the paper's
    outlier removal (a category one tagger of ten chose is noise)."""
    votes = np.asarray(votes, dtype=np.float64)
    ordered = np.zeros_like(votes)
    ordered[:, VOTE_CODES] = votes
    return np.where(ordered > 1, ordered, 0.0)


def majority(votes: np.ndarray) -> np.ndarray:
    """The paper's majority label per image (int64 codes, see `MAJORITY_NAMES`).

    After single votes are dropped the top category must hold more than half of the
    remaining votes, else the image is unknown; images without any vote are NO_VOTES.
    """
    counts = class_votes(votes)
    total = counts.sum(axis=1)
    top = counts.argmax(axis=1)
    codes = np.where(counts.max(axis=1) > 0.5 * total, top, UNKNOWN)
    codes[np.asarray(votes).sum(axis=1) == 0] = NO_VOTES
    return codes.astype(np.int64)


def vote_distribution(votes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(usable (N,) bool, probabilities (N, n_classes)) of the votes over the first
    `n_classes` classes, single votes dropped. An image is usable when those votes are more
    than half of its votes (unknown, not-a-face and classes outside the set are a minority);
    the paper's cross-entropy mode also keeps at most the top three emotions."""
    counts = class_votes(votes)
    inside = counts[:, :n_classes]
    kept = inside.sum(axis=1)
    usable = kept > 0.5 * counts.sum(axis=1)
    probs = np.divide(inside, kept[:, None], out=np.zeros_like(inside), where=kept[:, None] > 0)
    return usable, probs.astype(np.float32)


def agreement(labels: np.ndarray, votes: np.ndarray, n_labels: int = 7) -> np.ndarray:
    """Counts (n_labels, len(MAJORITY_NAMES)): FER-2013 label × FER+ majority."""
    codes = majority(votes)
    table = np.zeros((n_labels, len(MAJORITY_NAMES)), dtype=np.int64)
    np.add.at(table, (np.asarray(labels, dtype=np.int64), codes), 1)
    return table


@dataclass
class Targets:
    """The rows of a split a mode uses (`keep`), their hard labels (accuracy, stratified
    subsets) and, for the soft modes, their probability vectors (the loss targets)."""

    keep: np.ndarray  # (N,) bool over the split's rows
    labels: np.ndarray  # (n,) int64
    probs: np.ndarray | None  # (n, C) float32
    class_names: tuple[str, ...]


def make_targets(
    labels: np.ndarray,
    votes: np.ndarray | None,
    mode: str = "fer2013",
    classes: str = "fer7",
    blend: float = 0.5,
    label_names: tuple[str, ...] = EMOTIONS,
) -> Targets:
    """Training targets of one split for a `data.labels` mode and `data.classes` set;
    `label_names` name `labels` (a store's class names, kept as they are in fer2013 mode)."""
    if classes not in CLASS_SETS:
        raise ConfigError(f"classes {classes!r} is not one of {', '.join(CLASS_SETS)}")
    names = CLASS_SETS[classes]
    k = len(names)
    labels = np.asarray(labels, dtype=np.int64)
    if mode == "fer2013":
        if classes != "fer7":
            raise ConfigError(
                f"classes {classes} needs FER+ labels (FER-2013 has no contempt); set "
                "data.labels to ferplus_majority, ferplus_votes or blend"
            )
        return Targets(np.ones(len(labels), bool), labels, None, tuple(label_names))
    if mode not in FERPLUS_LABELS:
        raise ConfigError(f"labels {mode!r} is not one of fer2013, {', '.join(FERPLUS_LABELS)}")
    if votes is None:
        raise ConfigError(f"labels {mode} needs FER+ votes in the store")
    if mode == "ferplus_majority":
        codes = majority(votes)
        keep = codes < k
        return Targets(keep, codes[keep], None, names)
    usable, probs = vote_distribution(votes, k)
    if mode == "ferplus_votes":
        return Targets(usable, probs[usable].argmax(axis=1), probs[usable], names)
    soft = np.eye(k, dtype=np.float32)[labels]
    soft[usable] = (1 - blend) * soft[usable] + blend * probs[usable]
    return Targets(np.ones(len(labels), bool), soft.argmax(axis=1), soft, names)


def selection_labels(labels: str, val_labels: str = "auto") -> str:
    """The labels val is scored with (best checkpoint, early stopping, calibration):
    `val_labels`, where auto means FER+ majority for FER+ targets, else FER-2013."""
    if val_labels == "auto":
        return "ferplus_majority" if labels in FERPLUS_LABELS else "fer2013"
    return "ferplus_majority" if val_labels == "ferplus" else "fer2013"
