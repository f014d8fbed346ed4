"""`ferkit demo`: recognition end to end on bundled media, with no dataset and no network.

Uses the bundled astronaut portrait (NASA, public domain; see `ferkit/assets/README.md`)
and a short 640×480 clip generated from it (the portrait panned and zoomed, so the face
moves and changes size), and writes annotated image, video, GIF, CSV/JSONL, summary and
timeline under `runs/demo/`.

The model is the best one available, and the demo says which: an explicit choice
(`--model` or `$FERKIT_MODEL`), else the shipped "default" weights, else the training
run under `runs/` with the best validation accuracy, else a randomly initialised network
that is announced as UNTRAINED (its emotions mean nothing; the pipeline still runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ferkit.errors import ModelError

FALLBACK_ARCH = "mini_xception"


@dataclass
class ModelChoice:
    """The model the demo runs and how it was found (printed so nobody is misled)."""

    model: object
    description: str
    trained: bool
    # the name or path `model` was loaded from: given to the Recognizer instead of the
    # loaded model, it lets the Recognizer run the matching ONNX export on the CPU
    spec: str | None = None

    @property
    def for_recognizer(self):
        return self.spec or self.model


def sample_image() -> Path:
    """Path of the bundled astronaut portrait."""
    return Path(str(resources.files("ferkit") / "assets" / "astronaut.jpg"))


def make_clip(path: Path, seconds: float = 4.0, fps: float = 15.0, size=(640, 480)) -> Path:
    """Write a clip of the portrait slowly panning and zooming (the face moves and scales)."""
    import cv2

    from ferkit.infer.sources import read_image

    portrait = read_image(sample_image())
    width, height = size
    frames = int(round(seconds * fps))
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    part = path.with_name(f"{path.stem}.part{path.suffix}")
    writer = cv2.VideoWriter(str(part), fourcc, fps, size)
    background = cv2.resize(cv2.GaussianBlur(portrait, (0, 0), 25), size)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        side = int(height * (0.75 + 0.25 * np.sin(np.pi * t)))  # zoom in and back out
        scaled = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
        x = int((width - side) * t)  # pan from left to right
        y = (height - side) // 2
        frame = background.copy()
        frame[y : y + side, x : x + side] = scaled
        writer.write(frame)
    writer.release()
    os.replace(part, path)
    return path


def choose_model(explicit: str | None = None, runs: Path = Path("runs")) -> ModelChoice:
    """The best model available for the demo, with a plain description of what it is."""
    from ferkit.models.checkpoint import load_model, shipped_aliases, shipped_models

    explicit = explicit or os.environ.get("FERKIT_MODEL")
    if explicit:
        return ModelChoice(
            load_model(explicit), f"{explicit} (chosen explicitly)", True, spec=explicit
        )
    if "default" in shipped_models() or "default" in shipped_aliases():
        target = shipped_aliases().get("default", "default")
        shown = "" if target == "default" else f" (= {target!r})"
        return ModelChoice(
            load_model("default"), f"shipped 'default' weights{shown}", True, spec="default"
        )
    best = _best_run(runs)
    if best is not None:
        model = load_model(best)
        accuracy = (model.ferkit.metrics or {}).get("val_acc")
        shown = "val accuracy unknown" if accuracy is None else f"val accuracy {accuracy:.1%}"
        return ModelChoice(
            model,
            f"NO SHIPPED WEIGHTS YET: using the training run {best} ({shown})",
            True,
            spec=str(best),
        )
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
    return ModelChoice(
        model,
        f"NO SHIPPED WEIGHTS YET and no training run under {runs}/: an UNTRAINED "
        f"{FALLBACK_ARCH} (random weights; its emotions are meaningless, only the pipeline runs)",
        False,
    )


def _best_run(runs: Path) -> Path | None:
    """The runs/*/best.pt with the highest validation accuracy (readable ones only)."""
    from ferkit.models.checkpoint import load_checkpoint

    scored = []
    for path in runs.glob("*/best.pt"):
        try:
            metrics = load_checkpoint(path).metrics or {}
        except ModelError:
            continue
        scored.append((float(metrics.get("val_acc", -1.0)), path))
    return max(scored)[1] if scored else None


def run_demo(out: str | Path = "runs/demo", model: str | None = None, detector: str = "haar"):
    """Recognise the portrait and the generated clip; returns (ModelChoice, photo, clip)."""
    from ferkit.infer.recognizer import Recognizer
    from ferkit.infer.writers import record

    out = Path(out)
    choice = choose_model(model)
    recognizer = Recognizer(choice.for_recognizer, detector=detector)
    photo = record(recognizer, sample_image(), out / "photo")
    (out / "clip").mkdir(parents=True, exist_ok=True)
    clip_path = make_clip(out / "clip" / "astronaut_clip.mp4")
    clip = record(recognizer, clip_path, out / "clip", gif=True, progress=True)
    return choice, photo, clip
