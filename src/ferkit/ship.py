"""Ship a trained model: package weights (safetensors) plus a model card of measured results.

The card is what a user reads before trusting a shipped model, so every number in it is
measured by `ferkit evaluate`'s own code (`ferkit.evaluate.workflow.measure`: test-time
augmentation, temperature fitted on val, metrics) under FER-2013's protocol: the TTA mode
and the temperature are chosen on PublicTest (val), PrivateTest (test) is reported for every
mode and never used to choose anything. Both choices are stored with the weights (through
the checkpoint's own `Checkpoint.save`) and every inference backend applies them, so the
card's accuracy is what users get. The card also pins the weight file's sha256, the data,
the training command, hardware and wall time.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ferkit.errors import ModelError
from ferkit.files import atomic_text, sha256_file
from ferkit.hardware import cpu_summary
from ferkit.models.temperature import INFERENCE_TTA
from ferkit.paths import DEFAULT_STORE, METRICS_CSV

CARD_SUFFIX = ".card.json"
SPEED_THREADS = 2  # the card's throughput is measured on this many torch threads


def card_path(weights: Path) -> Path:
    """`weights/fast.safetensors` → `weights/fast.card.json`."""
    return weights.with_name(weights.stem + CARD_SUFFIX)


def crops_per_second(predict, faces, batch: int = 64, seconds: float = 3.0) -> float:
    """Sustained throughput of `predict` (a batch of face crops in) on real crops at a fixed
    batch size, best of 3 rounds. The one measurement behind the cards' crops/s (a
    classifier's `predict_proba`) and benchmarks/accuracy.py's faces/s (a Recognizer's
    `predict_batch`); `faces` is an array or a list of crops."""
    if len(faces) <= batch:
        faces = np.resize(np.asarray(faces), (batch + 1, *np.shape(faces[0])))
    best = 0.0
    for _ in range(3):
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 3:
            offset = done % (len(faces) - batch)
            predict(faces[offset : offset + batch])
            done += batch
        best = max(best, done / (time.perf_counter() - start))
    return best


@contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count set to `count` inside the block, restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _trained_on(checkpoint: Path, metrics: dict | None) -> list[str]:
    """The CPU flags (or GPUs) the run's epochs ran on, from its metrics.csv where it lies
    beside the checkpoint, else from the checkpoint's last epoch; [] where not recorded."""
    from ferkit.train.monitor import read_metrics

    table = checkpoint.parent / METRICS_CSV
    if table.is_file():
        return sorted({row.cpu for row in read_metrics(table)} - {""})
    return [metrics["cpu"]] if (metrics or {}).get("cpu") else []


def _scores(metrics: dict) -> dict:
    return {
        "accuracy": metrics["accuracy"],
        "accuracy_ci95": metrics["accuracy_ci95"],
        "macro_f1": metrics["macro"]["f1"],
        "balanced_accuracy": metrics["balanced_accuracy"],
    }


def _splits(data: str | Path, label_set: str, class_names, source):
    """The test split of the store `data` with val beside it (an `EvalData`), labelled as
    the model was selected (`label_set`: FER-2013's labels or FER+ majority) by the same
    loader as `ferkit evaluate`, and the store's provenance for the card; the model's
    classes must be the labels' classes."""
    from ferkit.evaluate.dataset import load_store_data

    test = load_store_data(data, "test", label_set)
    if tuple(test.class_names) != tuple(class_names):
        raise ModelError(
            f"{source}: classes {list(class_names)} differ from the {label_set} labels' "
            f"{list(test.class_names)} in {data}"
        )
    if test.val is None:
        raise ModelError(f"{data}: the val split is empty; shipping chooses TTA and T on it")
    info = {
        "store": str(data),
        "store_sha256": test.info["store_sha256"],
        "source_sha256": test.info["source_sha256"],
        "train_images": test.info["train_images"],
        "clean_summary": test.info["clean_summary"],
        "labels": test.info.get("labels", {"set": "fer2013"}),
    }
    return test, info


def _on_both(measured, data) -> dict:
    """val and test scores of one measurement (`workflow.Measured`)."""
    from ferkit.evaluate.metrics import classification_metrics

    val = classification_metrics(data.val[1], measured.val_probs, data.class_names)
    return {"val": _scores(val), "test": _scores(measured.metrics)}


def _write_json(path: Path, payload: dict) -> Path:
    return atomic_text(path, json.dumps(payload, indent=1, default=str) + "\n")


def ship_model(
    source: str | Path,
    name: str,
    *,
    data: str | Path = DEFAULT_STORE,
    command: str,
    wall_time_s: float | None = None,
    dest: str | Path | None = None,
    half: bool = True,
) -> tuple[Path, Path]:
    """Write `<dest>/<name>.safetensors` and its card from a checkpoint or run folder.

    `command` is the training command that produced `source` (recorded as is);
    `wall_time_s` its wall time when known; `half` stores the large weights as float16
    (half the bytes; the card measures the stored weights). Returns (weights, card).
    """
    import torch

    from ferkit.evaluate.labelsets import model_label_set
    from ferkit.evaluate.workflow import measure
    from ferkit.infer.backends import TorchClassifier
    from ferkit.models.checkpoint import load_checkpoint, resolve_checkpoint, weights_dir

    source_file = resolve_checkpoint(source)
    checkpoint = load_checkpoint(source_file)
    with tempfile.TemporaryDirectory(prefix="ferkit-ship-") as tmp:
        # Measure the weights exactly as they will ship (float16 storage included).
        shipped = load_checkpoint(checkpoint.save(Path(tmp) / "w.safetensors", half=half))
    model = shipped.model()
    data_split, store_info = _splits(
        data, model_label_set(checkpoint.config), checkpoint.class_names, source
    )
    classifier = TorchClassifier(model, calibrated=False, tta=False)
    measured = {mode: measure(classifier, data_split, mode) for mode in INFERENCE_TTA}
    results = {mode: _on_both(m, data_split) for mode, m in measured.items()}
    chosen = max(INFERENCE_TTA, key=lambda mode: results[mode]["val"]["accuracy"])
    # The shipped model is used with the chosen TTA (every backend applies `metrics["tta"]`),
    # so its temperature is fitted on, and its calibration reported for, those probabilities.
    test_chosen, calibration = measured[chosen].metrics, measured[chosen].calibration
    temperature = calibration["temperature"]

    shipped.metrics = {
        **(checkpoint.metrics or {}),
        "tta": chosen,
        "temperature": temperature,
        "temperature_fitted_on": {"split": "val", **store_info},
    }
    folder = Path(dest) if dest is not None else weights_dir()
    weights = shipped.save(folder / f"{name}.safetensors", half=half)
    with torch_threads(min(SPEED_THREADS, os.cpu_count() or 1)):
        speed = crops_per_second(classifier.predict_proba, data_split.faces)
    card = {
        "name": name,
        "file": weights.name,
        "sha256": sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "weights_stored_as": "float16 (large tensors), float32 (the rest)" if half else "float32",
        "architecture": {
            "arch": checkpoint.arch,
            "arch_kwargs": checkpoint.arch_kwargs,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "input": f"1×{checkpoint.preprocessing.size}×{checkpoint.preprocessing.size} grayscale",
        },
        "preprocessing": checkpoint.preprocessing.to_dict(),
        "training": {
            "command": command,
            "config": checkpoint.config,
            "epoch_selected": checkpoint.epoch,
            "selected_on": "val (PublicTest) accuracy",
            "hardware_trained_on": _trained_on(source_file, checkpoint.metrics),
            "hardware_measured_on": cpu_summary()
            + ("" if not torch.cuda.is_available() else f", {torch.cuda.get_device_name()}"),
            "wall_time_s": wall_time_s,
            "data": store_info,
        },
        "results": {
            "protocol": "TTA mode and temperature chosen on val (PublicTest); test = PrivateTest, "
            "reported for every mode, never used for a choice",
            "by_tta": results,
            "tta_chosen_on_val": chosen,
            "tta_applied_by_default": chosen,  # by Recognizer, predict, serve, every backend
            "test_accuracy": results[chosen]["test"]["accuracy"],
            "test_macro_f1": results[chosen]["test"]["macro_f1"],
            "test_per_class_recall": {k: v["recall"] for k, v in test_chosen["per_class"].items()},
            "temperature": temperature,
            "test_ece_before": calibration["ece_before"],
            "test_ece_after": calibration["ece_after"],
            "torch_crops_per_s_batch64_2threads": speed,
        },
        "measured_by": f"ferkit ship {source} --name {name} --data {data}",
        "reproduce_evaluation": f"ferkit evaluate {name} --data {data} --split test --tta {chosen}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return weights, _write_json(card_path(weights), card)


def ship_ensemble(
    members: list[str],
    name: str,
    *,
    data: str | Path = DEFAULT_STORE,
    dest: str | Path | None = None,
    int8: bool = False,
) -> tuple[Path, Path]:
    """Write `<dest>/<name>.ensemble.json` and its card: shipped models averaged.

    Each member runs as it does alone (`open_classifier`: its own TTA, its ONNX export on
    the CPU); the mean of their uncalibrated probabilities gets one temperature fitted on
    val. The card reports every member and the ensemble on val and test, and the faces/s
    of the whole.

    int8: the members are their shipped `ferkit export --int8` files (`NAME.int8.onnx`,
    made from exactly the shipped weights), which the ensemble file then names: several
    networks per face cost several times one, and int8 runs about three times faster than
    fp32 on the CPU for a few hundredths of a point (measured on the card, by member).
    """
    from ferkit.evaluate.labelsets import model_label_set
    from ferkit.evaluate.workflow import measure
    from ferkit.infer.backends import EnsembleClassifier
    from ferkit.infer.loading import open_classifier
    from ferkit.models.checkpoint import (
        ENSEMBLE_FORMAT,
        ENSEMBLE_SUFFIX,
        load_checkpoint,
        resolve_checkpoint,
        shipped_models,
        weights_dir,
    )

    unknown = [m for m in members if m not in shipped_models()]
    if len(members) < 2 or unknown:
        raise ModelError(
            f"an ensemble needs two or more shipped models as members; not shipped: {unknown}"
        )
    if int8:
        files, classifiers = zip(*(_int8_member(m) for m in members), strict=True)
    else:
        files, classifiers = None, [open_classifier(m, calibrated=False) for m in members]
    ensemble = EnsembleClassifier(classifiers)
    label_set = model_label_set(load_checkpoint(resolve_checkpoint(members[0])).config)
    data_split, store_info = _splits(
        data, label_set, ensemble.class_names, " + ".join(members)
    )  # fmt: skip
    by_member = {
        m: _on_both(measure(c, data_split), data_split)
        for m, c in zip(members, classifiers, strict=True)
    }
    measured = measure(ensemble, data_split)
    results, calibration = _on_both(measured, data_split), measured.calibration
    temperature = calibration["temperature"]
    folder = Path(dest) if dest is not None else weights_dir()
    listed = [os.path.relpath(f, folder) for f in files] if files else members
    spec = {"format": ENSEMBLE_FORMAT, "members": listed, "temperature": temperature}
    spec_path = _write_json(folder / f"{name}{ENSEMBLE_SUFFIX}", spec)
    ensemble.temperature = temperature  # its speed as shipped
    card = {
        "name": name,
        "file": spec_path.name,
        "members": members,
        "member_files": listed,
        "member_runtime": "ONNX Runtime int8 (static)" if int8 else "each member's default",
        "architecture": {"ensemble_of": members, "combination": "mean of probabilities"},
        "training": {"data": store_info, "members": "see each member's card"},
        "results": {
            "protocol": "members as shipped (their TTA chosen on val); temperature fitted on "
            "val (PublicTest); test = PrivateTest, never used for a choice",
            "by_member": by_member,
            "ensemble": results,
            "test_accuracy": results["test"]["accuracy"],
            "test_macro_f1": results["test"]["macro_f1"],
            "test_per_class_recall": {
                k: v["recall"] for k, v in measured.metrics["per_class"].items()
            },
            "temperature": temperature,
            "test_ece_before": calibration["ece_before"],
            "test_ece_after": calibration["ece_after"],
            "crops_per_s_batch64_all_members": crops_per_second(
                ensemble.predict_proba, data_split.faces
            ),
        },
        "hardware_measured_on": cpu_summary(),
        "measured_by": f"ferkit ship {' '.join(members)} --name {name} --data {data}"
        + (" --int8" if int8 else ""),
        "reproduce_evaluation": f"ferkit evaluate {name} --data {data} --split test",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return spec_path, _write_json(folder / f"{name}{CARD_SUFFIX}", card)


def _int8_member(name: str):
    """The shipped int8 export of the shipped model `name`, checked to be made from its
    current weights: its path and the export opened without its temperature (the
    ensemble fits its own)."""
    from ferkit.infer.loading import INT8_SUFFIX, matching_export
    from ferkit.models.checkpoint import resolve_checkpoint

    target = resolve_checkpoint(name).with_suffix(INT8_SUFFIX)
    exported = matching_export(name, int8=True, calibrated=False)
    if exported is None:
        raise ModelError(
            f"no int8 export of {name!r} made from its shipped weights at {target}: "
            f"run `ferkit export {name} --int8`"
        )
    return target, exported
