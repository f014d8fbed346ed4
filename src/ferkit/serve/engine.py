"""The one `Recognizer` a server shares, which model it runs, and how requests take turns.

Inference runs in worker threads so the event loop keeps accepting connections, one
request at a time under a lock: OpenCV's cascade detector is not safe to share between
threads, and on a laptop CPU one inference already uses every core. Before a pixel is
decoded, a request's images are measured from their headers and their memory reserved
from the shared `MemoryBudget`; decoding then overlaps with the model for as many
requests as the budget holds, and the decoded images are let go before the answer is
sent. HTTP requests that would have to wait behind more than `Limits.max_pending` others
are refused with 503 at once rather than queued for seconds; websocket frames have their
own bounded per-connection queue (`ferkit.serve.stream`).
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool

from ferkit.infer.frames import Frame
from ferkit.infer.loading import ModelChoice, backend_name, choose_model
from ferkit.infer.recognizer import Recognizer
from ferkit.infer.results import COLORS, Face, FrameResult
from ferkit.infer.smoothing import TrackSmoother
from ferkit.infer.tracking import IoUTracker
from ferkit.serve.limits import Limits, MemoryBudget, Rejected, decode, measure


def choose(model=None, device: str = "cpu") -> ModelChoice:
    """The model to serve, on `device`, opened as every command opens it (`choose_model`):
    the best available one when `model` is None (shipped "default", else the best
    training run, else an announced UNTRAINED network); a name or path (checkpoint, run
    folder, .onnx) when given; or a ready model / classifier object."""
    if isinstance(model, torch.nn.Module):
        model.to(device)  # a loaded torch model is on the CPU
    return choose_model(model, device=device)


@dataclass
class Prediction:
    """The faces found in one upload (its pixels are not kept: only the annotated JPEG,
    when asked for)."""

    name: str
    width: int
    height: int
    faces: list[Face]
    annotated: bytes | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.name,
            "width": self.width,
            "height": self.height,
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
        self.budget = MemoryBudget(limits.decode_budget_bytes)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model=None, limits: Limits | None = None, **recognizer_options) -> Engine:
        """Choose the model (see `choose`) and build the Recognizer around it."""
        choice = choose(model, recognizer_options.get("device", "cpu"))
        recognizer = Recognizer(choice.classifier, **recognizer_options)
        return cls(recognizer, choice, limits or Limits())

    def describe(self) -> dict:
        """The model being served, as /api/models and the page show it."""
        return {
            "description": self.choice.description,
            "trained": self.choice.trained,
            "backend": backend_name(self.recognizer.classifier),
            "class_names": list(self.recognizer.class_names),
            "input_size": self.recognizer.preprocessing.size,
            "detector": self.recognizer.detector.name,
            "smoothing": vars(self.recognizer.smoothing),
            "colors": {name: _css(COLORS.get(name)) for name in self.recognizer.class_names},
        }

    async def predict(
        self, uploads: list[tuple[BinaryIO, str]], annotate: bool = False
    ) -> list[Prediction]:
        """Measure, decode and recognise a list of (file, name) uploads (see `measure`);
        all their faces go through the model together. `annotate` adds the annotated JPEG."""
        if self.pending >= self.limits.max_pending:
            raise Rejected(
                503,
                f"server busy: {self.pending} requests are already waiting for the model "
                f"(limit {self.limits.max_pending}); retry shortly",
            )
        self.pending += 1
        try:
            return await run_in_threadpool(self._predict, uploads, annotate)
        finally:
            self.pending -= 1

    async def track(
        self, data: bytes, name: str, index: int, time_s: float,
        tracker: IoUTracker, smoother: TrackSmoother,
    ) -> tuple[tuple[int, int], FrameResult]:  # fmt: skip
        """Measure, decode and run one stream frame through `Recognizer.track_frame` with
        the connection's own tracker and smoother; the frame's (height, width) and result."""
        return await run_in_threadpool(
            self._track, data, name, index, time_s, tracker, smoother
        )  # fmt: skip

    def _predict(self, uploads: list[tuple[BinaryIO, str]], annotate: bool) -> list[Prediction]:
        with self.budget.reserve(measure(uploads, self.limits)):
            images = [decode(file, name, self.limits) for file, name in uploads]
            with self._lock:
                faces = self.recognizer.predict_batch(images)
            return [
                Prediction(name, *image.shape[1::-1], found,
                           _annotated_jpeg(image, found, name) if annotate else None)
                for (_, name), image, found in zip(uploads, images, faces, strict=True)
            ]  # fmt: skip

    def _track(self, data, name, index, time_s, tracker, smoother):
        file = io.BytesIO(data)
        with self.budget.reserve(measure([(file, name)], self.limits)):
            image = decode(file, name, self.limits)
            with self._lock:
                result = self.recognizer.track_frame(
                    Frame(index, time_s, image, name), tracker, smoother
                )
            return image.shape[:2], result


def _annotated_jpeg(image: np.ndarray, faces: list[Face], name: str) -> bytes:
    import cv2

    from ferkit.infer.results import draw_faces

    ok, buffer = cv2.imencode(".jpg", draw_faces(image, faces))
    if not ok:
        raise Rejected(500, f"{name}: could not encode the annotated image")
    return buffer.tobytes()


def _css(bgr: tuple[int, int, int] | None) -> str:
    """An OpenCV BGR colour as CSS #rrggbb (the page draws with the same colours)."""
    b, g, r = bgr or (0, 255, 0)
    return f"#{r:02x}{g:02x}{b:02x}"
