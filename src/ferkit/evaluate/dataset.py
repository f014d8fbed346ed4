"""The faces an evaluation scores (`EvalData`): one split of an HDF5 store with val beside
it for calibration, or a labelled image folder read through the recognition pipeline, then
restricted to the classes the model and the labels share.

The store's provenance (its sha256, the source's, the cleaning summary, the number of
training images) travels in `EvalData.info`, so report.json and a shipped model's card say
what was measured without opening the store again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.errors import DataError
from ferkit.evaluate.ensemble import Member
from ferkit.evaluate.labelsets import (
    FERPLUS_RULE,
    LABEL_SETS,
    ClassScoring,
    class_scoring,
    ferplus_majority_labels,
    scoring_note,
)
from ferkit.files import sha256_file
from ferkit.labels import FERPLUS_EMOTIONS

log = logging.getLogger(__name__)

SPLIT_LABELS = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


@dataclass
class EvalData:
    """Faces to evaluate and, for calibration, the val split (None for a folder)."""

    faces: np.ndarray
    labels: np.ndarray
    ids: list[str]
    class_names: tuple[str, ...]
    info: dict
    where: str
    val: tuple[np.ndarray, np.ndarray] | None = None


def load_store_data(path: str | Path, split: str, label_set: str = "fer2013") -> EvalData:
    """One split of an HDF5 store, with val for calibration and the store's provenance;
    label_set "ferplus" scores against the FER+ majority labels instead of the store's."""
    from ferkit.data.store import SPLITS, open_store, split_index

    if label_set not in LABEL_SETS:
        raise DataError(f"unknown labels {label_set!r}; expected one of {', '.join(LABEL_SETS)}")
    name = SPLITS[split_index(split)]
    with open_store(path) as store:
        faces, labels = store.split_arrays(name)
        val = store.split_arrays("val")
        ids = store.source_ids(name)
        report = store.clean_report()
        info = {
            "kind": "store",
            "path": str(path),
            "store_sha256": sha256_file(Path(path)),
            "source": store.source,
            "source_sha256": store.source_sha256,
            "split": name,
            "split_label": SPLIT_LABELS[name],
            "n": int(len(labels)),
            "train_images": int(sum(store.counts()["train"].values())),
            "leakage_cleaned": bool(report.get("options", {}).get("drop_leaks", False)),
            "leaks_found": int(store.clean_summary.get("leaks_found", 0)),
            "clean_summary": store.clean_summary,
            "mean": store.mean,
            "std": store.std,
        }
        class_names = store.class_names
        if label_set == "ferplus":
            keep, labels, left_out = ferplus_majority_labels(store.ferplus_votes(name)[0])
            faces, ids = faces[keep], [ids[i] for i in np.flatnonzero(keep)]
            val_keep, val_labels, _ = ferplus_majority_labels(store.ferplus_votes("val")[0])
            val = (val[0][val_keep], val_labels)
            class_names = FERPLUS_EMOTIONS
            info["n"] = int(len(labels))
            info["labels"] = {"set": "ferplus", "rule": FERPLUS_RULE, "left_out": left_out}
    if len(labels) == 0:
        raise DataError(f"{path}: the {name} split is empty; nothing to evaluate")
    return EvalData(
        faces=faces,
        labels=labels.astype(np.int64),
        ids=ids,
        class_names=class_names,
        info=info,
        where=f"{path} ({name})",
        val=(val[0], val[1].astype(np.int64)) if len(val[1]) else None,
    )


def load_folder_data(
    root: str | Path, members: Sequence[Member], faces: Mapping, class_map: Mapping | None
) -> EvalData:
    """A labelled image folder through the recognition pipeline `ferkit predict` runs: a
    `Recognizer` around the first member with the face options `faces` (its keyword
    arguments: detector, detector_options, equalize, align, device), so the crops are
    exactly the ones users get."""
    from ferkit.evaluate.folder import load_labelled_folder
    from ferkit.infer.recognizer import Recognizer

    first = members[0]
    recognizer = Recognizer(first.classifier, tracking=False, **faces)
    folder = load_labelled_folder(root, first.class_names, recognizer, class_map=class_map)
    log.info("%s: %s", root, folder.face_counts())
    return EvalData(
        faces=folder.faces,
        labels=folder.labels,
        ids=folder.paths,
        class_names=folder.class_names,
        info=folder.describe(),
        where=str(root),
    )


def score_on_shared_classes(data: EvalData, model_classes) -> tuple[EvalData, ClassScoring]:
    """The data restricted to the classes the model shares with its labels, where one class
    set holds the other (`labelsets.class_scoring`); unchanged otherwise."""
    scoring = class_scoring(model_classes, data.class_names)
    if not scoring.restricted:
        return data, scoring
    keep, labels = scoring.rows(data.labels)
    left_out = Counter(data.class_names[k] for k in data.labels[~keep])
    val = None
    if data.val is not None:
        val_keep, val_labels = scoring.rows(data.val[1])
        val = (data.val[0][val_keep], val_labels)
    info = {
        **data.info,
        "n": int(keep.sum()),
        "scored_classes": list(scoring.class_names),
        "scoring": scoring_note(scoring, dict(left_out)),
    }
    ids = [data.ids[i] for i in np.flatnonzero(keep)]
    restricted = EvalData(data.faces[keep], labels, ids, scoring.class_names, info, data.where, val)
    return restricted, scoring
