"""The one `Recognizer` a server shares, which model it runs, and how requests take turns.

Inference runs in worker threads so the event loop keeps accepting connections, one
request at a time under a lock: OpenCV's cascade detector is not safe to share between
threads, and on a laptop CPU one inference already uses every core. Decoding happens
outside the lock, so it overlaps with the model. HTTP requests that would have to wait
behind more than `Limits.max_pending` others are refused with 503 at once rather than
queued for seconds; websocket frames have their own bounded per-connection queue
(`ferkit.serve.stream`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool

from ferkit.infer.backends import OnnxClassifier, load_classifier
from ferkit.infer.demo import ModelChoice, choose_model
from ferkit.infer.recognizer import Recognizer
from ferkit.infer.results import COLORS, Face, FrameResult
from ferkit.infer.smoothing import TrackSmoother
from ferkit.infer.sources import Frame
from ferkit.infer.tracking import IoUTracker
from ferkit.serve.limits import Limits, Rejected, decode_image


def choose(model=None, device: str = "cpu") -> ModelChoice:
    """The model to serve, on `device`: the best available one when `model` is None (the
    rules of `ferkit demo`: shipped "default", else the newest training run, else an
    announced UNTRAINED network); a name or path (checkpoint, run folder, .onnx) when
    given; or a ready model / classifier object as is."""
    if isinstance(model, str | Path):
        classifier = load_classifier(model, device=device)
        return ModelChoice(classifier, f"{model} (chosen explicitly)", True)
    choice = choose_model() if model is None else ModelChoice(
        model, f"{type(model).__name__} given by the caller", True
    )  # fmt: skip
    if isinstance(choice.model, torch.nn.Module):
        choice.model.to(device)  # a loaded torch model is on the CPU
    return choice


@dataclass
class Prediction:
    """One decoded upload and the faces found in it."""

    name: str
    image: np.ndarray
    faces: list[Face]

    def to_dict(self) -> dict:
        height, width = self.image.shape[:2]
        return {
            "file": self.name,
            "width": width,
            "height": height,
            "faces": [face.to_dict() for face in self.faces],
        }


class Engine:
    """A Recognizer plus the bookkeeping the endpoints report and enforce."""

    def __init__(self, recognizer: Recognizer, choice: ModelChoice, limits: Limits) -> None:
        self.recognizer = recognizer
        self.choice = choice
        self.limits = limits
        self.pending = 0  # HTTP requests decoding or waiting for the model
        self.streams = 0  # open websocket connections
        self.started = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model=None, limits: Limits | None = None, **recognizer_options) -> Engine:
        """Choose the model (see `choose`) and build the Recognizer around it."""
        choice = choose(model, recognizer_options.get("device", "cpu"))
        recognizer = Recognizer(choice.for_recognizer, **recognizer_options)
        return cls(recognizer, choice, limits or Limits())

    def describe(self) -> dict:
        """The model being served, as /api/models and the page show it."""
        classifier = self.recognizer.classifier
        return {
            "description": self.choice.description,
            "trained": self.choice.trained,
            "backend": "onnx" if isinstance(classifier, OnnxClassifier) else "torch",
            "class_names": list(self.recognizer.class_names),
            "input_size": self.recognizer.preprocessing.size,
            "detector": type(self.recognizer.detector).__name__,
            "smoothing": vars(self.recognizer.smoothing),
            "colors": {name: _css(COLORS.get(name)) for name in self.recognizer.class_names},
        }

    async def predict(self, uploads: list[tuple[bytes, str]]) -> list[Prediction]:
        """Decode (checking each image, see `decode_image`) and recognise a list of
        (bytes, name) uploads; all their faces go through the model together."""
        if self.pending >= self.limits.max_pending:
            raise Rejected(
                503,
                f"server busy: {self.pending} requests are already waiting for the model "
                f"(limit {self.limits.max_pending}); retry shortly",
            )
        self.pending += 1
        try:
            return await run_in_threadpool(self._predict, uploads)
        finally:
            self.pending -= 1

    async def track(
        self, data: bytes, name: str, index: int, time_s: float,
        tracker: IoUTracker, smoother: TrackSmoother,
    ) -> tuple[np.ndarray, FrameResult]:  # fmt: skip
        """Decode one stream frame and run it through `Recognizer.track_frame` with the
        connection's own tracker and smoother."""
        return await run_in_threadpool(
            self._track, data, name, index, time_s, tracker, smoother
        )  # fmt: skip

    def _predict(self, uploads: list[tuple[bytes, str]]) -> list[Prediction]:
        images = [decode_image(data, name, self.limits) for data, name in uploads]
        with self._lock:
            faces = self.recognizer.predict_batch(images)
        return [
            Prediction(name, image, found)
            for (_, name), image, found in zip(uploads, images, faces, strict=True)
        ]

    def _track(self, data, name, index, time_s, tracker, smoother):
        image = decode_image(data, name, self.limits)
        with self._lock:
            result = self.recognizer.track_frame(
                Frame(index, time_s, image, name), tracker, smoother
            )
        return image, result


def _css(bgr: tuple[int, int, int] | None) -> str:
    """An OpenCV BGR colour as CSS #rrggbb (the page draws with the same colours)."""
    b, g, r = bgr or (0, 255, 0)
    return f"#{r:02x}{g:02x}{b:02x}"
