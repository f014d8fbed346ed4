"""Which labels an evaluation scores against, and on which classes.

    ferplus_majority_labels(votes)   FER+ majority labels: the standard FER+ test protocol
                                     (the paper's majority rule; images whose majority is
                                     unknown or not-a-face, or without votes, left out)
    class_scoring(model, labels)     a model scored on the classes it shares with the labels

A 7-class FER-2013 model meets 8-class FER+ labels (contempt added), or an 8-class FER+
model meets 7-class FER-2013 labels. Either is scored on the classes both have: images
labelled with a class the model lacks are left out, and the probabilities of a class the
labels lack are dropped and the rest renormalised. The report says which, and how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferkit.data.targets import MAJORITY_NAMES, UNKNOWN, majority, selection_labels
from ferkit.labels import CLASS_SETS

LABEL_SETS = ("fer2013", "ferplus")
FERPLUS_RULE = (
    "FER+ majority (Barsoum et al. 2016: single votes dropped, the top category must hold "
    "more than half of the rest)"
)


def ferplus_majority_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(keep (N,) bool, the kept rows' labels in `ferkit.labels.FERPLUS_EMOTIONS` order,
    {reason: count} of the rows left out) for (N, 10) FER+ votes."""
    codes = majority(votes)
    keep = codes < UNKNOWN
    left_out = {
        MAJORITY_NAMES[c]: int(np.sum(codes == c)) for c in range(UNKNOWN, len(MAJORITY_NAMES))
    }
    return keep, codes[keep], left_out


def model_label_set(config: dict | None) -> str:
    """The label set a model was selected on (its checkpoint's training config): a
    temperature fitted on other labels does not belong in its checkpoint."""
    data = (config or {}).get("data") or {}
    own = selection_labels(data.get("labels", "fer2013"), data.get("val_labels", "auto"))
    return "ferplus" if own == "ferplus_majority" else "fer2013"


@dataclass
class ClassScoring:
    """How a model's classes meet the labels' classes.

    `model_classes` are what every member must predict; `class_names` are the classes scored
    (in the model's order); `columns` picks the model's probabilities of those classes (None:
    all of them); `label_index` maps each label index to its scored index (-1: left out).
    """

    model_classes: tuple[str, ...]
    class_names: tuple[str, ...]
    columns: np.ndarray | None = None
    label_index: np.ndarray | None = None

    @property
    def restricted(self) -> bool:
        return self.columns is not None or self.label_index is not None

    def rows(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep mask, labels as indices of `class_names`) of the rows that can be scored."""
        if self.label_index is None:
            return np.ones(len(labels), bool), labels
        mapped = self.label_index[labels]
        return mapped >= 0, mapped[mapped >= 0]

    def probs(self, probs: np.ndarray) -> np.ndarray:
        """The model's probabilities of the scored classes, renormalised to sum to 1."""
        if self.columns is None:
            return probs
        kept = probs[:, self.columns]
        return kept / np.clip(kept.sum(axis=1, keepdims=True), 1e-12, None)


def class_scoring(model_classes: Sequence[str], label_classes: Sequence[str]) -> ClassScoring:
    """Score on the shared classes when the model and the labels use the two class sets
    (`ferkit.labels.CLASS_SETS`: FER-2013's 7, FER+'s 8); any other pair of class lists
    must match, and the compatibility check says where it does not."""
    model, labels = tuple(model_classes), tuple(label_classes)
    known = set(CLASS_SETS.values())
    if model == labels or model not in known or labels not in known:
        return ClassScoring(model_classes=labels, class_names=labels)
    shared = tuple(c for c in model if c in labels)
    columns = np.array([model.index(c) for c in shared]) if len(shared) < len(model) else None
    label_index = None
    if len(shared) < len(labels):
        label_index = np.array([shared.index(c) if c in shared else -1 for c in labels])
    return ClassScoring(model, shared, columns, label_index)


def scoring_note(scoring: ClassScoring, left_out: dict[str, int]) -> str:
    """One sentence for the report: which classes were scored and what was left out."""
    parts = [f"scored on the {len(scoring.class_names)} classes the model and the labels share"]
    if left_out:
        counts = ", ".join(f"{name} {n:,}" for name, n in left_out.items())
        parts.append(f"images labelled with a class the model lacks left out ({counts})")
    if scoring.columns is not None:
        dropped = [c for c in scoring.model_classes if c not in scoring.class_names]
        parts.append(
            f"the model's probabilities of {', '.join(dropped)} dropped and the rest renormalised"
        )
    return "; ".join(parts)
