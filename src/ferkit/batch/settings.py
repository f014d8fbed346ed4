"""The settings of a batch run: the `Recognizer` options as plain JSON, so that a task can
be shipped to any worker, the model built there, and the settings hashed for resuming.

`recognizer_settings(...)` takes the options of `ferkit predict` and validates them at once
(in the driver, before any worker starts); `build_recognizer(settings)` is what each
worker calls. `fingerprint(...)` is the hash a finished file is recorded under: the
Recognizer options, the model file's sha256 and the time-range split, so changing any of
them processes every file again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ferkit.infer.defaults import DETECTOR

FORMAT = 1  # version of the output layout and row schema


def recognizer_settings(
    model: str = "default",
    *,
    backend: str = "auto",
    detector: str = DETECTOR,
    detector_options: dict | None = None,
    equalize: bool | None = True,
    align: str | None = None,
    tracking: bool | dict = True,
    smoothing: str = "mean",
    window: int | None = None,
    alpha: float | None = None,
    threads: int = 1,
) -> dict:
    """JSON-safe Recognizer options; invalid tracking or smoothing values fail here."""
    from ferkit.infer.smoothing import SmoothingConfig
    from ferkit.infer.tracking import TrackingConfig

    smooth = {"method": smoothing}
    smooth.update({k: v for k, v in {"window": window, "alpha": alpha}.items() if v is not None})
    if tracking is True:
        tracking = {}
    track = None if tracking is False else asdict(TrackingConfig(**tracking))
    options = {k: str(v) if isinstance(v, Path) else v for k, v in (detector_options or {}).items()}
    return {
        "model": str(model),
        "backend": backend,
        "detector": detector,
        "detector_options": options,
        "equalize": equalize,
        "align": align,
        "tracking": track,
        "smoothing": asdict(SmoothingConfig(**smooth)),
        "threads": threads,
    }


def build_recognizer(settings: dict):
    """The Recognizer these settings describe (CPU, with the settings' thread count)."""
    from ferkit.infer.recognizer import Recognizer, set_threads
    from ferkit.infer.smoothing import SmoothingConfig
    from ferkit.infer.tracking import TrackingConfig

    set_threads(settings["threads"])
    tracking = settings["tracking"]
    return Recognizer(
        settings["model"],
        detector=settings["detector"],
        detector_options=dict(settings["detector_options"]),
        smoothing=SmoothingConfig(**settings["smoothing"]),
        tracking=TrackingConfig(**tracking) if tracking is not None else False,
        equalize=settings["equalize"],
        align=settings["align"],
        backend=settings["backend"],
    )


def model_identity(model: str) -> dict:
    """Name, file and sha256 of the model the settings name (a shipped name, checkpoint,
    run folder, ensemble or .onnx file); a `ModelError` naming it when there is none."""
    from ferkit.files import sha256_file
    from ferkit.models.checkpoint import resolve_checkpoint, resolve_ensemble

    path = resolve_ensemble(model)
    if path is None:
        onnx = Path(model)
        path = onnx if onnx.suffix == ".onnx" and onnx.is_file() else resolve_checkpoint(model)
    return {"name": model, "path": str(path), "sha256": sha256_file(path)}


def fingerprint(recognizer: dict, model_sha256: str, chunk_s, overlap_s) -> str:
    """The hash of everything that decides a file's rows besides its bytes."""
    what = {"format": FORMAT, "recognizer": recognizer, "model_sha256": model_sha256,
            "chunk_s": chunk_s, "overlap_s": overlap_s}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
