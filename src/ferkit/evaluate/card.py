"""Ship a trained model: package weights (safetensors) plus a model card of measured results.

The card is what a user reads before trusting a shipped model, so every number in it is
measured here, by the same code as `ferkit evaluate`, under FER-2013's protocol: the TTA
mode and the temperature are chosen on PublicTest (val), PrivateTest (test) is reported for
every mode and never used to choose anything. Both choices are stored with the weights and
every inference backend applies them, so the card's accuracy is what users get. The card
also pins the weight file's sha256, the data, the training command, hardware and wall time.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit.errors import ModelError
from ferkit.files import sha256_file
from ferkit.hardware import cpu_summary
from ferkit.models.temperature import INFERENCE_TTA

CARD_SUFFIX = ".card.json"


def card_path(weights: Path) -> Path:
    """`weights/fast.safetensors` → `weights/fast.card.json`."""
    return weights.with_name(weights.stem + CARD_SUFFIX)


def crops_per_second(classifier, faces: np.ndarray, batch: int = 64, seconds: float = 3.0) -> float:
    """Sustained torch throughput on real crops at a fixed batch size (best of 3 rounds)."""
    if len(faces) <= batch:
        faces = np.resize(faces, (batch + 1, *faces.shape[1:]))
    best = 0.0
    for _ in range(3):
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 3:
            offset = (done // batch * batch) % (len(faces) - batch)
            classifier.predict_proba(faces[offset : offset + batch])
            done += batch
        best = max(best, done / (time.perf_counter() - start))
    return best


def _trained_on(checkpoint: Path, metrics: dict | None) -> list[str]:
    """The CPU flags (or GPUs) the run's epochs ran on, from its metrics.csv where it lies
    beside the checkpoint, else from the checkpoint's last epoch; [] where not recorded."""
    from ferkit.train.report import read_metrics

    table = checkpoint.parent / "metrics.csv"
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


def _shipping_splits(data: str | Path, label_set: str, class_names, source) -> tuple:
    """(val faces, val labels, test faces, test labels, store info) of the store `data`,
    labelled as the model was selected (`label_set`: FER-2013's labels or FER+ majority) by
    the same loader as `ferkit evaluate`; the model's classes must be the labels' classes."""
    from ferkit.data.store import open_store
    from ferkit.evaluate.runner import load_store_data

    test = load_store_data(data, "test", label_set)
    if tuple(test.class_names) != tuple(class_names):
        raise ModelError(
            f"{source}: classes {list(class_names)} differ from the {label_set} labels' "
            f"{list(test.class_names)} in {data}"
        )
    with open_store(data) as store:
        train_images = sum(store.counts()["train"].values())
    info = {
        "store": str(data),
        "store_sha256": test.info["store_sha256"],
        "source_sha256": test.info["source_sha256"],
        "train_images": train_images,
        "clean_summary": test.info["clean_summary"],
        "labels": test.info.get("labels", {"set": "fer2013"}),
    }
    val_faces, val_labels = test.val
    return val_faces, val_labels, test.faces, test.labels, info


def ship_model(
    source: str | Path,
    name: str,
    *,
    data: str | Path = "data/fer2013.h5",
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

    from ferkit.evaluate.calibration import (
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
    )
    from ferkit.evaluate.labelsets import model_label_set
    from ferkit.evaluate.metrics import classification_metrics
    from ferkit.evaluate.tta import predict_tta
    from ferkit.files import atomic_path
    from ferkit.infer.backends import TorchClassifier
    from ferkit.models.checkpoint import (
        load_checkpoint,
        load_model,
        resolve_checkpoint,
        save_checkpoint,
        weights_dir,
    )

    checkpoint = load_checkpoint(resolve_checkpoint(source))
    described = dict(
        arch=checkpoint.arch, arch_kwargs=checkpoint.arch_kwargs,
        preprocessing=checkpoint.preprocessing, class_names=checkpoint.class_names,
        config=checkpoint.config, epoch=checkpoint.epoch, half=half,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="ferkit-ship-") as tmp:
        # Measure the weights exactly as they will ship (float16 storage included).
        stored = save_checkpoint(Path(tmp) / "w.safetensors", load_model(source), **described)
        model = load_model(stored)
    val_faces, val_labels, test_faces, test_labels, store_info = _shipping_splits(
        data, model_label_set(checkpoint.config), checkpoint.class_names, source
    )
    classifier = TorchClassifier(model, calibrated=False, tta=False)

    names = checkpoint.class_names
    results, probs = {}, {}
    for mode in INFERENCE_TTA:
        probs[mode] = (predict_tta(classifier, val_faces, mode),
                       predict_tta(classifier, test_faces, mode))  # fmt: skip
        results[mode] = {
            "val": _scores(classification_metrics(val_labels, probs[mode][0], names)),
            "test": _scores(classification_metrics(test_labels, probs[mode][1], names)),
        }
    chosen = max(INFERENCE_TTA, key=lambda mode: results[mode]["val"]["accuracy"])
    # The shipped model is used with the chosen TTA (every backend applies `metrics["tta"]`),
    # so its temperature is fitted on, and its calibration reported for, those probabilities.
    temperature = fit_temperature(probs[chosen][0], val_labels)
    test_chosen = classification_metrics(test_labels, probs[chosen][1], names)

    metrics = dict(checkpoint.metrics or {})
    metrics.update(
        tta=chosen, temperature=temperature, temperature_fitted_on={"split": "val", **store_info}
    )
    folder = Path(dest) if dest is not None else weights_dir()
    weights = folder / f"{name}.safetensors"
    save_checkpoint(weights, model, metrics=metrics, **described)

    torch.set_num_threads(min(2, os.cpu_count() or 1))
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
            "hardware_trained_on": _trained_on(resolve_checkpoint(source), checkpoint.metrics),
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
            "test_ece_before": test_chosen["ece"],
            "test_ece_after": expected_calibration_error(
                apply_temperature(probs[chosen][1], temperature), test_labels
            ),
            "torch_crops_per_s_batch64_2threads": crops_per_second(classifier, test_faces),
        },
        "measured_by": f"ferkit ship {source} --name {name} --data {data}",
        "reproduce_evaluation": f"ferkit evaluate {name} --data {data} --split test --tta {chosen}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = card_path(weights)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return weights, path


def ship_ensemble(
    members: list[str],
    name: str,
    *,
    data: str | Path = "data/fer2013.h5",
    dest: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write `<dest>/<name>.ensemble.json` and its card: shipped models averaged.

    Each member runs as it does alone (its own TTA; its ONNX export on the CPU); the mean
    of their uncalibrated probabilities gets one temperature fitted on val. The card
    reports every member and the ensemble on val and test, and the faces/s of the whole.
    """
    from ferkit.evaluate.calibration import expected_calibration_error, fit_temperature
    from ferkit.evaluate.labelsets import model_label_set
    from ferkit.evaluate.metrics import classification_metrics
    from ferkit.files import atomic_path
    from ferkit.infer.backends import EnsembleClassifier
    from ferkit.infer.loading import open_classifier
    from ferkit.models.checkpoint import (
        ENSEMBLE_SUFFIX,
        load_checkpoint,
        resolve_checkpoint,
        shipped_models,
        weights_dir,
    )
    from ferkit.models.temperature import apply_temperature

    unknown = [m for m in members if m not in shipped_models()]
    if len(members) < 2 or unknown:
        raise ModelError(
            f"an ensemble needs two or more shipped models as members; not shipped: {unknown}"
        )
    classifiers = [open_classifier(m, calibrated=False) for m in members]
    ensemble = EnsembleClassifier(classifiers)
    label_set = model_label_set(load_checkpoint(resolve_checkpoint(members[0])).config)
    val_faces, val_labels, test_faces, test_labels, store_info = _shipping_splits(
        data, label_set, ensemble.class_names, " + ".join(members)
    )
    names = ensemble.class_names

    def scores(classifier) -> tuple[dict, np.ndarray, np.ndarray]:
        val, test = classifier.predict_proba(val_faces), classifier.predict_proba(test_faces)
        return (
            {
                "val": _scores(classification_metrics(val_labels, val, names)),
                "test": _scores(classification_metrics(test_labels, test, names)),
            },
            val,
            test,
        )

    by_member = {m: scores(c)[0] for m, c in zip(members, classifiers)}
    results, val_probs, test_probs = scores(ensemble)
    temperature = fit_temperature(val_probs, val_labels)
    test_metrics = classification_metrics(test_labels, test_probs, names)
    folder = Path(dest) if dest is not None else weights_dir()
    spec_path = folder / f"{name}{ENSEMBLE_SUFFIX}"
    spec = {"format": "ferkit-ensemble", "members": members, "temperature": temperature}
    with atomic_path(spec_path) as tmp:
        tmp.write_text(json.dumps(spec, indent=1) + "\n")
    ensemble.temperature = temperature
    card = {
        "name": name,
        "file": spec_path.name,
        "members": members,
        "architecture": {"ensemble_of": members, "combination": "mean of probabilities"},
        "training": {
            "data": store_info,
            "members": "see each member's card",
        },  # fmt: skip
        "results": {
            "protocol": "members as shipped (their TTA chosen on val); temperature fitted on "
            "val (PublicTest); test = PrivateTest, never used for a choice",
            "by_member": by_member,
            "ensemble": results,
            "test_accuracy": results["test"]["accuracy"],
            "test_macro_f1": results["test"]["macro_f1"],
            "test_per_class_recall": {k: v["recall"] for k, v in test_metrics["per_class"].items()},
            "temperature": temperature,
            "test_ece_before": test_metrics["ece"],
            "test_ece_after": expected_calibration_error(
                apply_temperature(test_probs, temperature), test_labels
            ),
            "crops_per_s_batch64_all_members": crops_per_second(ensemble, test_faces),
        },
        "hardware_measured_on": cpu_summary(),
        "measured_by": f"ferkit ship {' '.join(members)} --name {name} --data {data}",
        "reproduce_evaluation": f"ferkit evaluate {name} --data {data} --split test",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = folder / f"{name}{CARD_SUFFIX}"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(card, indent=1, default=str) + "\n")
    return spec_path, path
