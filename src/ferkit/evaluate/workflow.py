"""`evaluate()`: the workflow behind `ferkit evaluate` — models × data → report folder.

    from ferkit.evaluate import evaluate
    result = evaluate(["runs/a"], data="data/fer2013.h5", split="test", tta="flip")
    result.report["headline"]["metrics"]["accuracy"]

Steps: load the members (run folders, checkpoints, ONNX files, shipped names) through the
classifier seam; read the split of the store (or a labelled folder); classify every face
with the chosen test-time augmentation; fit a temperature on val (PublicTest), stored in each
member's checkpoint only when asked (`save_temperature`: measuring never changes what it
measures unless asked); compute the metrics of every member and of their ensemble; draw
the figures; write report.json and report.md. Protocol discipline is recorded, not assumed:
report.json says which split served selection, calibration and reporting, the store's
sha256 and whether leakage-cleaned data was used, and warns where the protocol was broken.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.errors import DataError
from ferkit.evaluate.calibration import (
    apply_temperature,
    as_probs,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    store_temperature,
)
from ferkit.evaluate.dataset import (
    SPLIT_LABELS,
    EvalData,
    load_folder_data,
    load_store_data,
    score_on_shared_classes,
)
from ferkit.evaluate.ensemble import Member, check_compatible, ensemble_probs, load_members
from ferkit.evaluate.labelsets import ClassScoring, model_label_set
from ferkit.evaluate.metrics import BOOTSTRAP, classification_metrics
from ferkit.evaluate.tta import check_mode, predict_tta, view_count
from ferkit.infer.defaults import DETECTOR
from ferkit.paths import DEFAULT_STORE

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """The report (as written to report.json), the folder and the files written."""

    report: dict
    out: Path
    files: list[Path] = field(default_factory=list)


def calibration_summary(
    probs: np.ndarray,
    labels: np.ndarray,
    val: tuple[np.ndarray, np.ndarray] | None,
    stored: float | None,
) -> tuple[dict | None, np.ndarray | None]:
    """Temperature scaling: T fitted on val probabilities (or the checkpoint's stored T when
    there is no val), with NLL and ECE on the evaluated data before and after."""
    from sklearn.metrics import log_loss

    if val is not None:
        temperature, source = fit_temperature(*val), "fitted on val (PublicTest)"
    elif stored is not None:
        temperature, source = stored, "stored in the checkpoint"
    else:
        return None, None
    calibrated = apply_temperature(probs, temperature)
    classes = list(range(probs.shape[1]))
    return {
        "temperature": temperature,
        "source": source,
        "nll_before": float(log_loss(labels, as_probs(probs), labels=classes)),
        "nll_after": float(log_loss(labels, as_probs(calibrated), labels=classes)),
        "ece_before": expected_calibration_error(probs, labels),
        "ece_after": expected_calibration_error(calibrated, labels),
        "reliability_after": reliability_bins(calibrated, labels),
    }, calibrated


def _weights_dir() -> Path:
    from ferkit.models.checkpoint import weights_dir

    return weights_dir().resolve()


def _keep_temperature(member: Member, calibration: dict, data: EvalData, tta: str) -> str:
    """Store a val-fitted T in the member's checkpoint; say where it went or why not."""
    if not calibration["source"].startswith("fitted"):
        return "not stored (not fitted here)"
    if tta != "none":
        return "not stored: fitted with TTA; the checkpoint keeps the T of single-view use"
    if member.checkpoint is None:
        return "not stored: not a PyTorch checkpoint"
    if "scoring" in data.info:
        return "not stored: fitted on the classes shared with the labels, not the model's own"
    labels = data.info.get("labels", {}).get("set", "fer2013")
    own = model_label_set(member.meta.config)
    if labels != own:
        return f"not stored: fitted on {labels} labels; the model was selected on {own} labels"
    if _weights_dir() in member.checkpoint.resolve().parents:
        return "not stored: shipped weights are read-only"
    fitted_on = {
        "split": "val",
        "store": data.info.get("path"),
        "store_sha256": data.info.get("store_sha256"),
    }
    store_temperature(member.checkpoint, calibration["temperature"], fitted_on)
    return str(member.checkpoint)


def _score(name, probs, data, val_probs, stored, bootstrap, seed) -> tuple[dict, dict | None]:
    metrics = classification_metrics(
        data.labels, probs, data.class_names, bootstrap=bootstrap, seed=seed
    )
    val = (val_probs, data.val[1]) if val_probs is not None else None
    calibration, _ = calibration_summary(probs, data.labels, val, stored)
    log.info("%s: accuracy %.4f on %s", name, metrics["accuracy"], data.where)
    return metrics, calibration


@dataclass
class Measured:
    """One classifier measured on `EvalData`: its probabilities (of the data, and of val
    when calibrating), metrics, calibration (None without val or stored T) and the seconds
    the data took."""

    probs: np.ndarray
    val_probs: np.ndarray | None
    metrics: dict
    calibration: dict | None
    seconds: float


def measure(
    classifier,
    data: EvalData,
    tta: str = "none",
    *,
    scoring: ClassScoring | None = None,
    calibrate: bool = True,
    stored: float | None = None,
    name: str = "model",
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> Measured:
    """The evaluation of one classifier, as `evaluate` does it for each member and
    `ferkit ship` for each TTA mode: classify the data (and val, when `calibrate`) with
    `tta`, projected onto the scored classes (`scoring`), then metrics and the temperature
    fitted on val (or the `stored` one)."""

    def probs_of(faces):
        probs = predict_tta(classifier, faces, tta)
        return scoring.probs(probs) if scoring is not None else probs

    start = time.perf_counter()
    probs = probs_of(data.faces)
    seconds = time.perf_counter() - start
    val_probs = probs_of(data.val[0]) if calibrate and data.val is not None else None
    metrics, calibration = _score(name, probs, data, val_probs, stored, bootstrap, seed)
    return Measured(probs, val_probs, metrics, calibration, seconds)


def protocol(data: EvalData, members: list[dict], calibration: str | None) -> dict:
    """Which split served what, and warnings where the evaluation cannot be trusted as is."""
    split = data.info.get("split")
    selected = sorted({m["selected_on"] for m in members if m.get("selected_on")})
    warnings = []
    if split == "val":
        warnings.append(
            "reported on val (PublicTest), the split of model selection, early stopping and "
            "calibration: these numbers are optimistic; report test (PrivateTest)"
        )
    elif split == "train":
        warnings.append("reported on the training split: not an estimate of generalisation")
    if data.info.get("kind") == "store":
        if data.info["leaks_found"] and not data.info["leakage_cleaned"]:
            warnings.append(
                f"{data.info['leaks_found']} training images also appear in val/test "
                "(store prepared without --drop-leaks): test accuracy may be optimistic"
            )
        for m in members:
            prep = m["preprocessing"]
            unit_scaled = prep["mean"] == 0.0 and prep["std"] == 1.0  # data.scale=unit
            if not unit_scaled and (
                abs(prep["mean"] - data.info["mean"]) > 1e-3
                or abs(prep["std"] - data.info["std"]) > 1e-3
            ):
                warnings.append(
                    f"{m['name']}: its normalisation differs from this store's statistics; "
                    "it was probably trained on another store"
                )
    label = SPLIT_LABELS.get(split, "labelled folder") if split else "labelled folder"
    if data.info.get("labels", {}).get("set") == "ferplus":
        label += ", FER+ majority labels"
    return {
        "reported_on": f"{split} ({label})" if split else f"folder {data.info['path']}",
        "scoring": data.info.get("scoring"),
        "model_selection": [f"{s} ({SPLIT_LABELS.get(s, s)})" for s in selected],
        "calibration": calibration,
        "warnings": warnings,
    }


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.#-]+", "-", name).strip("-") or "model"


def output_folder(members: Sequence[Member], out: str | Path | None) -> Path:
    """--out, else the run folder of a single run, else runs/evaluate/<model names>."""
    if out is not None:
        return Path(out)
    if len(members) == 1 and members[0].run_dir is not None:
        return members[0].run_dir
    return Path("runs/evaluate") / "+".join(_safe(m.name) for m in members)


def evaluate(
    models: Sequence[str | Path],
    *,
    data: str | Path | None = DEFAULT_STORE,
    split: str = "test",
    labels: str = "fer2013",
    folder: str | Path | None = None,
    detector: str | None = DETECTOR,
    detector_options: Mapping | None = None,
    equalize: bool | None = True,
    align: str | None = None,
    class_map: Mapping[str, str] | None = None,
    tta: str = "none",
    out: str | Path | None = None,
    calibrate: bool = True,
    save_temperature: bool = False,
    explain: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> EvalResult:
    """Evaluate one model or an ensemble and write the report folder (see module docstring).

    folder: a labelled image folder to evaluate instead of the store, through the
    recognition pipeline with `Recognizer`'s options and defaults (`detector` None uses
    whole images; `detector_options`, `equalize`, `align`). calibrate: fit T on val;
    save_temperature: also store it in each checkpoint (single-view TTA only; off by
    default, so evaluating leaves the checkpoint as it was). explain: Grad-CAM
    figures for that many misclassified faces. labels: "fer2013" (the store's) or "ferplus"
    (FER+ majority, the FER+ test protocol); a model is scored on the classes it shares
    with the labels, and the report says so.
    """
    from ferkit.evaluate.report_files import write_figures, write_report

    check_mode(tta)
    if folder is not None and labels != "fer2013":
        raise DataError(f"labels {labels!r} come from a store's FER+ votes; {folder} has its own")
    members = load_members(models, device, batch_size)
    if folder is not None:
        faces = {"detector": detector or "none", "detector_options": detector_options,
                 "equalize": equalize, "align": align, "device": device}  # fmt: skip
        dataset = load_folder_data(folder, members, faces, class_map)
    else:
        dataset = load_store_data(data, split, labels)
    dataset, scoring = score_on_shared_classes(dataset, members[0].class_names)
    check_compatible(members, scoring.model_classes, dataset.faces.shape[1], dataset.where)
    use_val = calibrate and dataset.val is not None

    rows, all_probs, all_val = [], [], []
    for member in members:
        measured = measure(
            member.classifier, dataset, tta, scoring=scoring, calibrate=calibrate,
            stored=member.temperature, name=member.name, bootstrap=bootstrap, seed=seed,
        )  # fmt: skip
        calibration, seconds, n = measured.calibration, measured.seconds, len(measured.probs)
        if calibration is not None and save_temperature:
            calibration["stored_in"] = _keep_temperature(member, calibration, dataset, tta)
        rows.append({
            **member.describe(),
            "seconds": seconds,
            "images_per_s": n / seconds,
            "crops_per_s": n * view_count(tta) / seconds,
            "metrics": measured.metrics,
            "calibration": calibration,
        })  # fmt: skip
        all_probs.append(measured.probs)
        all_val.append(measured.val_probs)

    ensemble = None
    if len(members) > 1:
        probs = ensemble_probs(all_probs)
        val_probs = ensemble_probs(all_val) if use_val else None
        metrics, calibration = _score("ensemble", probs, dataset, val_probs, None, bootstrap, seed)
        ensemble = {
            "members": [m.name for m in members],
            "combination": "mean of member probabilities",
            "metrics": metrics,
            "calibration": calibration,
        }
    if use_val:
        calibration_note = "val (PublicTest)"
    elif any(row["calibration"] for row in rows):
        calibration_note = "temperature stored in the checkpoint (fitted on val before)"
    else:
        calibration_note = None
    headline_probs = ensemble_probs(all_probs)
    headline = ensemble or rows[0]

    from ferkit import __version__

    report = {
        "ferkit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": dataset.info,
        "tta": {"mode": tta, "views": view_count(tta)},
        "protocol": protocol(dataset, rows, calibration_note),
        "members": rows,
        "ensemble": ensemble,
        "headline": {
            "name": "ensemble" if ensemble else rows[0]["name"],
            "metrics": headline["metrics"],
            "calibration": headline["calibration"],
        },
    }
    out = output_folder(members, out)
    figures = write_figures(report, out, dataset, headline_probs, members, explain)
    files = write_report(report, out)
    return EvalResult(report=report, out=out, files=[*figures.values(), *files])
