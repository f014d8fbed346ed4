"""`open_classifier(spec)`: the one place that decides which model runs, and on which backend.

Every command that runs a model (predict, evaluate, explain, serve, demo, export, ship and
the benchmarks) opens it here, so a name means the same network on the same backend
everywhere. A spec is one of:

- a shipped name or alias ("default", "fast": `weights/`, aliases followed);
- a shipped ensemble's name or a `*.ensemble.json` file (members opened here, one by one);
- a run folder (its best checkpoint), a checkpoint file (.pt / .safetensors);
- an exported `.onnx` file;
- a loaded model (`load_model`) or a ready `Classifier` (used as is);
- None: the best model available (`choose_model`: `$FERKIT_MODEL`, else the shipped
  "default", else the best training run under runs/, else an announced UNTRAINED network).

backend "auto" means one thing: ONNX Runtime for an .onnx file; on the CPU, the model's
`ferkit export` beside its checkpoint where it was made from exactly these weights
(`matching_export`: same probabilities, faster); else PyTorch. "torch" runs the network
itself (evaluation and Grad-CAM need it), "onnx" requires the export.
Names and aliases become files in `ferkit.models.checkpoint` (`resolve_checkpoint`,
`resolve_ensemble`), below this layer, because `load_model` needs them too.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ferkit.errors import ModelError
from ferkit.infer.backends import (
    Classifier,
    EnsembleClassifier,
    OnnxClassifier,
    TorchClassifier,
)

BACKENDS = ("auto", "torch", "onnx")
ONNX_SUFFIX = ".onnx"
INT8_SUFFIX = ".int8.onnx"  # `ferkit export --int8` beside its checkpoint
FALLBACK_ARCH = "mini_xception"


def open_classifier(
    spec="default",
    *,
    device: str = "cpu",
    backend: str = "auto",
    batch_size: int = 256,
    calibrated: bool = True,
    tta: bool = True,
) -> Classifier:
    """The `Classifier` for `spec` (see the module docstring) on `device` and `backend`.

    calibrated: apply the model's stored temperature; tta: its stored test-time
    augmentation (evaluation turns both off, since it applies them itself).
    """
    if spec is None:
        return choose_model(None, device=device, backend=backend, batch_size=batch_size).classifier
    if isinstance(spec, Classifier):
        return spec
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    options = {"batch_size": batch_size, "calibrated": calibrated, "tta": tta}
    if not isinstance(spec, str | Path):
        if not hasattr(spec, "parameters"):
            raise ModelError(f"cannot use {type(spec).__name__} as an emotion classifier")
        if backend == "onnx":
            raise ModelError("the onnx backend needs a .onnx file, a checkpoint path or a name")
        return TorchClassifier(spec, **options)
    from ferkit.models import checkpoint

    ensemble = checkpoint.resolve_ensemble(spec)
    if ensemble is not None:
        spec_file = checkpoint.read_ensemble(ensemble)
        members = [
            open_classifier(m, device=device, backend=backend, **{**options, "calibrated": False})
            for m in spec_file["members"]
        ]
        return EnsembleClassifier(members, spec_file["temperature"] if calibrated else None)
    if is_onnx_file(spec):
        if backend == "torch":
            raise ModelError(f"{spec}: an ONNX file runs with the onnx backend, not torch")
        return OnnxClassifier(spec, device=device, **options)
    if backend == "onnx":
        exported = checkpoint.resolve_checkpoint(spec).with_suffix(ONNX_SUFFIX)
        if not exported.is_file():
            raise ModelError(f"no ONNX export of {spec} at {exported}; run `ferkit export {spec}`")
        return OnnxClassifier(exported, device=device, **options)
    if backend == "auto" and device == "cpu":
        exported = matching_export(spec, **options)
        if exported is not None:
            return exported
    return TorchClassifier(checkpoint.load_model(spec, device=device), **options)


def is_onnx_file(spec) -> bool:
    return isinstance(spec, str | Path) and Path(spec).suffix.lower() == ONNX_SUFFIX


def network_backend(spec) -> str:
    """The backend that runs `spec`'s network itself, never an export in its place: what
    evaluation measures (an .onnx file is its own network)."""
    return "onnx" if is_onnx_file(spec) else "torch"


def matching_export(
    spec: str | Path,
    batch_size: int = 256,
    calibrated: bool = True,
    tta: bool = True,
    int8: bool = False,
) -> OnnxClassifier | None:
    """The fp32 `ferkit export` (int8: the `--int8` one, `NAME.int8.onnx`) beside a
    checkpoint or shipped model as an `OnnxClassifier`, where onnxruntime is installed and
    the export was made from exactly these weights (its recorded sha256: an export left from
    before retraining is not used); else None.

    Same probabilities as PyTorch (parity checked by `ferkit export`) in a third of the
    time for one face (0.8 vs 2.6 ms with the shipped model on one CPU core), which is why
    "auto" prefers it on the CPU.
    """
    from ferkit.files import sha256_file
    from ferkit.models.checkpoint import resolve_checkpoint

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    source = resolve_checkpoint(spec)
    exported = source.with_suffix(INT8_SUFFIX if int8 else ONNX_SUFFIX)
    if not exported.is_file():
        return None
    try:
        classifier = OnnxClassifier(exported, batch_size=batch_size, calibrated=calibrated, tta=tta)
    except ModelError:  # not a ferkit export, or one this onnxruntime cannot run
        return None
    made_from = classifier.metadata.get("source_sha256")
    return classifier if made_from == sha256_file(source) else None


def backend_name(classifier: Classifier) -> str:
    """ "onnx", "torch" or "ensemble": what runs a classifier, for reports and /api/models."""
    if isinstance(classifier, EnsembleClassifier):
        return "ensemble"
    return "onnx" if isinstance(classifier, OnnxClassifier) else "torch"


@dataclass
class ModelChoice:
    """The classifier a command runs and how it was found (printed so nobody is misled)."""

    classifier: Classifier
    description: str
    trained: bool
    spec: str | None = None  # the name or path it was opened from, where there is one


def choose_model(
    explicit=None,
    *,
    device: str = "cpu",
    backend: str = "auto",
    batch_size: int = 256,
    runs: Path = Path("runs"),
) -> ModelChoice:
    """The model `explicit` names (or `$FERKIT_MODEL`), else the best one available: the
    shipped "default" weights, else the training run under `runs` with the best validation
    accuracy, else a randomly initialised network announced as UNTRAINED (its emotions
    mean nothing; the pipeline still runs). Opened once, by `open_classifier`."""
    from ferkit.models import checkpoint

    def opened(spec):
        return open_classifier(spec, device=device, backend=backend, batch_size=batch_size)

    explicit = explicit or os.environ.get("FERKIT_MODEL")
    if isinstance(explicit, str | Path):
        return ModelChoice(opened(explicit), f"{explicit} (chosen explicitly)", True, str(explicit))
    if explicit is not None:
        given = f"{type(explicit).__name__} given by the caller"
        return ModelChoice(opened(explicit), given, True)
    if "default" in checkpoint.shipped_models() or "default" in checkpoint.shipped_aliases():
        target = checkpoint.shipped_aliases().get("default", "default")
        shown = "" if target == "default" else f" (= {target!r})"
        return ModelChoice(opened("default"), f"shipped 'default' weights{shown}", True, "default")
    best = best_run(runs)
    if best is not None:
        best, accuracy = best
        classifier = opened(best)
        shown = "val accuracy unknown" if accuracy is None else f"val accuracy {accuracy:.1%}"
        description = f"NO SHIPPED WEIGHTS YET: using the training run {best} ({shown})"
        return ModelChoice(classifier, description, True, str(best))
    return ModelChoice(
        TorchClassifier(_untrained().to(device), batch_size=batch_size),
        f"NO SHIPPED WEIGHTS YET and no training run under {runs}/: an UNTRAINED "
        f"{FALLBACK_ARCH} (random weights; its emotions are meaningless, only the pipeline runs)",
        False,
    )


def _untrained():
    import torch

    from ferkit.labels import EMOTIONS
    from ferkit.models.checkpoint import Checkpoint
    from ferkit.models.registry import create_model
    from ferkit.preprocess import Preprocessing

    torch.manual_seed(0)  # the same untrained network on every run
    model = create_model(FALLBACK_ARCH).eval()
    model.ferkit = Checkpoint(
        arch=FALLBACK_ARCH, class_names=EMOTIONS, preprocessing=Preprocessing()
    )
    return model


def best_run(runs: Path) -> tuple[Path, float | None] | None:
    """The runs/*/best.pt with the highest validation accuracy (readable ones only), and
    that accuracy (None where the checkpoint does not record it)."""
    from ferkit.models.checkpoint import load_checkpoint
    from ferkit.paths import BEST

    scored = []
    for path in Path(runs).glob(f"*/{BEST}"):
        try:
            accuracy = (load_checkpoint(path).metrics or {}).get("val_acc")
        except ModelError:
            continue
        scored.append((-1.0 if accuracy is None else float(accuracy), path, accuracy))
    return max(scored)[1:] if scored else None
