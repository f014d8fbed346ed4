"""`ferkit demo`: recognition end to end on bundled media, with no dataset and no network.

Uses the bundled astronaut portrait (NASA, public domain; see `ferkit/assets/README.md`)
and a short 640×480 clip generated from it (the portrait panned and zoomed, so the face
moves and changes size), and writes annotated image, video, GIF, CSV/JSONL, summary and
timeline under `runs/demo/`.

The model is the best one available, and the demo says which: an explicit choice
(`--model` or `$FERKIT_MODEL`), else the shipped "default" weights, else the training
run under `runs/` with the best validation accuracy, else a randomly initialised network
that is announced as UNTRAINED (`ferkit.infer.loading.choose_model` decides, for serve too).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ferkit.files import atomic_path
from ferkit.infer.defaults import DETECTOR
from ferkit.infer.loading import choose_model


def sample_image() -> Path:
    """Path of the bundled astronaut portrait."""
    return Path(str(resources.files("ferkit") / "assets" / "astronaut.jpg"))


def make_clip(path: Path, seconds: float = 4.0, fps: float = 15.0, size=(640, 480)) -> Path:
    """Write a clip of the portrait slowly panning and zooming (the face moves and scales)."""
    import cv2

    from ferkit.infer.frames import read_image

    portrait = read_image(sample_image())
    width, height = size
    frames = int(round(seconds * fps))
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    background = cv2.resize(cv2.GaussianBlur(portrait, (0, 0), 25), size)
    with atomic_path(path) as part:
        writer = cv2.VideoWriter(str(part), fourcc, fps, size)
        try:
            for i in range(frames):
                t = i / max(frames - 1, 1)
                side = int(height * (0.75 + 0.25 * np.sin(np.pi * t)))  # zoom in and back out
                scaled = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA)
                x = int((width - side) * t)  # pan from left to right
                y = (height - side) // 2
                frame = background.copy()
                frame[y : y + side, x : x + side] = scaled
                writer.write(frame)
        finally:
            writer.release()
    return path


def run_demo(out: str | Path = "runs/demo", model: str | None = None, detector: str = DETECTOR):
    """Recognise the portrait and the generated clip; returns (ModelChoice, photo, clip)."""
    from ferkit.infer.recognizer import Recognizer
    from ferkit.infer.writers import record

    out = Path(out)
    choice = choose_model(model)
    recognizer = Recognizer(choice.classifier, detector=detector)  # opened once, here
    photo = record(recognizer, sample_image(), out / "photo")
    (out / "clip").mkdir(parents=True, exist_ok=True)
    clip_path = make_clip(out / "clip" / "astronaut_clip.mp4")
    clip = record(recognizer, clip_path, out / "clip", gif=True, progress=True)
    return choice, photo, clip
