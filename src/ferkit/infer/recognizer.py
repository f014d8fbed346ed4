"""`Recognizer`: the one entry point for recognising emotions in images, videos and streams.

    from ferkit import Recognizer
    rec = Recognizer()                      # shipped "default" model, MTCNN, CPU
    faces = rec.predict("photo.jpg")        # list[Face]
    for result in rec.stream("clip.mp4"):   # FrameResult per frame, tracked and smoothed
        ...

Pipeline per frame: detect faces (every n-th frame when tracking, mostly only around the
faces already tracked, see `TrackingConfig`) and drop boxes that lie mostly inside a
larger face's box (a mouth or chin found as a face of its own) → at a scene cut, end every
track → IoU tracker gives stable ids with hysteresis (a new face found again by a second
look in a window around it is reported at once) → `face_crop` frames each face as the
training faces are framed, with the model's own `Preprocessing` → all crops of the frame
through the classifier in one batch → per-track smoothing → `Face`s.
Still images (a photo, a folder) skip tracking and go through the classifier in batches
of many images. `detect` and `crop` are the same two steps for callers that need the
crops themselves (`ferkit evaluate --folder`, `ferkit explain`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ferkit.infer.align import face_crop
from ferkit.infer.backends import Classifier, set_onnx_threads
from ferkit.infer.defaults import DETECTOR
from ferkit.infer.faces import Detection, FaceDetector, create_detector
from ferkit.infer.frames import Frame, Source, load_source, read_image
from ferkit.infer.loading import open_classifier
from ferkit.infer.results import Face, FrameResult
from ferkit.infer.smoothing import SmoothingConfig, TrackSmoother
from ferkit.infer.tracking import IoUTracker, TrackingConfig, iou_matrix

_STILLS_PER_BATCH = 32  # images of a folder detected, then classified together
_MIN_SIDE = 8  # boxes smaller than this (after clipping to the frame) are dropped
_SAME_FACE_IOU = 0.5  # detections from overlapping search windows above this are one face
_WINDOW_FACE = 64  # a tracked face is searched for at (at most) this size in pixels
_WINDOW_PAD = 0.75  # the window reaches this many face sides beyond the face on each side
_SIZE_RANGE = 1.3  # ... for faces from 1/1.3 to 1.3 times the tracked face's size
_NESTED = 0.6  # a box with this share of its area inside a larger face's box is dropped


class Recognizer:
    """Detect faces and recognise their emotions.

    model, backend: what `ferkit.infer.loading.open_classifier` opens (a shipped name, run
        folder, checkpoint, ensemble, .onnx file, loaded model or `Classifier`; None: the
        best available) and on which backend ("auto", "torch" or "onnx").
    detector: "mtcnn" (default, `ferkit.infer.defaults`), "ssd", "haar", "yunet", "none"
        or a `FaceDetector`; `detector_options` go to `create_detector` (e.g. {"eye_check":
        True} for Haar, {"model_path": "yunet.onnx"}, or "rotations": the angles at which
        it also searches the image turned where the upright pass finds no face; MTCNN's and
        the SSD's default (-20, 20), () for upright only).
    smoothing: "mean" (default), "ema", "none" or a `SmoothingConfig` (videos and streams).
    tracking: True (defaults), False (detect every frame, no ids, no smoothing) or a
        `TrackingConfig` (detect_every, min_hits, max_missed, iou_threshold).
    equalize: histogram-equalise each face crop (FER-2013 faces are contrast-stretched,
        camera faces are not). On by default: on FER-2013 test faces made camera-like it
        raised the shipped model's accuracy from 50.0 % to 55.4 %, on the faces as stored it
        cost 1 point (62.6 % → 61.6 %; benchmarks/recognize.py). None keeps the model's own
        setting.
    align: "template" (frame each face as FER-2013 frames its faces, from the detector's
        landmarks and box; `ferkit.infer.align`), "similarity" (from the landmark fit alone,
        the default before session 5), "box" (the detector's box widened by the model's
        margin, the crop before alignment) or None (the model's own setting).
    """

    def __init__(
        self,
        model="default",
        detector: str | FaceDetector = DETECTOR,
        device: str = "cpu",
        *,
        smoothing: str | SmoothingConfig = "mean",
        tracking: bool | TrackingConfig = True,
        equalize: bool | None = True,
        align: str | None = None,
        detector_options: dict | None = None,
        batch_size: int = 256,
        backend: str = "auto",
    ) -> None:
        self.classifier: Classifier = open_classifier(
            model, device=device, backend=backend, batch_size=batch_size
        )
        if isinstance(detector, str):
            options = dict(detector_options or {})
            if detector in ("mtcnn", "ssd"):
                options.setdefault("device", device)
            detector = create_detector(detector, **options)
        self.detector = detector
        chosen = {"equalize": equalize, "align": align}
        self.preprocessing = replace(
            self.classifier.preprocessing, **{k: v for k, v in chosen.items() if v is not None}
        )
        self.smoothing = SmoothingConfig(smoothing) if isinstance(smoothing, str) else smoothing
        if tracking is True:
            tracking = TrackingConfig()
        self.tracking: TrackingConfig | None = tracking or None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classifier.class_names

    # ------------------------------------------------------------------ stills
    def predict(self, image: str | Path | np.ndarray) -> list[Face]:
        """Faces in one image (a path or a BGR/gray uint8 array); [] when there is none."""
        if not isinstance(image, np.ndarray):
            image = read_image(image)
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each of several images; all their crops go through the model together."""
        found = [self.detect(image) for image in images]
        crops = [self.crop(img, d) for img, ds in zip(images, found) for d in ds]
        probs = self._classify(crops)
        out, at = [], 0
        for detections in found:
            out.append([self._face(d.box, probs[at + i]) for i, d in enumerate(detections)])
            at += len(detections)
        return out

    def detect(self, image: np.ndarray, face_sizes=None) -> list[Detection]:
        """The faces the pipeline reports in an image: the detector's, clipped to the image,
        without boxes that lie mostly inside a larger face's box."""
        if face_sizes is None:  # (detectors written for the plain protocol work too)
            detections = self.detector.detect(image)
        else:
            detections = self.detector.detect(image, face_sizes=face_sizes)
        clipped = [
            Detection(box, d.score, d.landmarks)
            for d in detections
            if (box := _clip(d.box, image.shape)) is not None
        ]
        return drop_nested(clipped)

    def crop(self, image: np.ndarray, detection: Detection | None) -> np.ndarray:
        """The model's input for one face (None: the whole image), framed as in training."""
        name = getattr(self.detector, "name", None)
        return face_crop(image, detection, self.preprocessing, name)

    # ------------------------------------------------------------------ streams
    def stream(self, source, *, camera: int | None = None) -> Iterator[FrameResult]:
        """Per-frame results of any source `load_source` accepts (or a `Source`)."""
        for _, result in self.frames(source, camera=camera):
            yield result

    def frames(self, source, *, camera: int | None = None) -> Iterator[tuple[Frame, FrameResult]]:
        """Like `stream`, with each frame's pixels (for drawing and writing video)."""
        if not isinstance(source, Source):
            source = load_source(source, camera=camera)
        if source.is_video:
            yield from self._video_frames(source)
        else:
            yield from self._still_frames(source)

    def _still_frames(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, FrameResult]]:
        batch: list[Frame] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == _STILLS_PER_BATCH:
                yield from self._still_batch(batch)
                batch = []
        yield from self._still_batch(batch)

    def _still_batch(self, batch: list[Frame]) -> Iterator[tuple[Frame, FrameResult]]:
        for frame, faces in zip(batch, self.predict_batch([f.image for f in batch]), strict=True):
            yield frame, FrameResult(frame.index, frame.time_s, faces, source=frame.name)

    def _video_frames(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, FrameResult]]:
        if self.tracking is None:
            for frame in frames:
                faces = self.predict_batch([frame.image])[0]
                yield frame, FrameResult(frame.index, frame.time_s, faces, source=frame.name)
            return
        tracker, smoother = IoUTracker(self.tracking), TrackSmoother(self.smoothing)
        for frame in frames:
            yield frame, self.track_frame(frame, tracker, smoother)

    def track_frame(
        self, frame: Frame, tracker: IoUTracker, smoother: TrackSmoother
    ) -> FrameResult:
        """One frame of a video or live stream: detect, track, classify, smooth.

        The tracker and smoother are the stream's state and belong to the caller: `stream()`
        keeps one pair per video, a server one pair per connection (frames pushed one at a
        time). Frame indices must increase; they schedule the detection passes.
        """
        if tracker.cuts.is_cut(frame.image):
            tracker.end_all()
        if tracker.is_search_frame(frame.index):
            recheck = partial(self._found_again, frame.image)
            tracks = self._update(tracker, self.detect(frame.image), frame.index, recheck)
        elif tracker.is_detection_frame(frame.index):
            near = [t.predicted(frame.index) for t in tracker.tracks]
            tracks = self._update(tracker, self._detect_near(frame.image, near), frame.index)
        else:
            tracks = tracker.predict(frame.index)
        shape = frame.image.shape
        kept = [
            (t.id, Detection(b, 1.0, t.landmarks_at(b)))
            for t in tracks
            if (b := _clip(t.box, shape)) is not None
        ]
        probs = self._classify([self.crop(frame.image, d) for _, d in kept])
        faces = [
            self._face(d.box, smoother.update(track_id, p), track_id)
            for (track_id, d), p in zip(kept, probs, strict=True)
        ]
        smoother.prune(t.id for t in tracker.tracks)
        return FrameResult(frame.index, frame.time_s, faces, source=frame.name)

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _update(tracker: IoUTracker, found: list[Detection], index: int, recheck=None):
        boxes, landmarks = [d.box for d in found], [d.landmarks for d in found]
        return tracker.update(boxes, index, recheck, landmarks)

    def _detect_near(self, image: np.ndarray, boxes) -> list[Detection]:
        """Detect only in a window around each box, for faces of about its size, shrunk
        so the face there is at most `_WINDOW_FACE` pixels: a few scales of a small image
        instead of every scale of the whole frame, and the same cost for a face close to
        the camera as for a distant one. A face found from two overlapping windows counts
        once."""
        import cv2

        found: list[Detection] = []
        for x, y, w, h in boxes:
            side = max(w, h)
            pad = _WINDOW_PAD * side
            window = _clip((x - pad, y - pad, w + 2 * pad, h + 2 * pad), image.shape)
            if window is None:
                continue
            wx, wy, ww, wh = window
            crop = image[wy : wy + wh, wx : wx + ww]
            scale = min(1.0, _WINDOW_FACE / side)
            if scale < 1.0:
                crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            sizes = (side * scale / _SIZE_RANGE, side * scale * _SIZE_RANGE)
            for near in self.detect(crop, sizes):
                moved = near.moved(wx, wy, scale)
                box = _clip(moved.box, image.shape)
                if box is None:
                    continue
                if not found or iou_matrix([box], [f.box for f in found]).max() < _SAME_FACE_IOU:
                    found.append(Detection(box, moved.score, moved.landmarks))
        return found

    def _found_again(self, image: np.ndarray, box) -> bool:
        """A second look at a new detection: does the detector find it again in a window
        around it, which it sees at another scale, pixel grid and (Haar) contrast stretch
        than in the whole-frame pass? A detection that fails it waits for a second frame,
        as before; the clip without faces in benchmarks/recognize.py measures the cost."""
        again = [d.box for d in self._detect_near(image, [box])]
        return bool(again) and iou_matrix([box], again).max() >= _SAME_FACE_IOU

    def _classify(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self.classifier.predict_proba(np.stack(crops))

    def _face(self, box, probs: np.ndarray, track_id: int | None = None) -> Face:
        return Face.from_probs(box, probs, self.class_names, track_id)


def set_threads(threads: int) -> None:
    """CPU threads of torch, OpenCV and the ONNX Runtime sessions opened afterwards, for
    this process.

    Recognition runs many tiny operations per frame (one frame, a few faces), where
    intra-op parallelism gains little and costs a lot when the CPU is busy: measured on a
    loaded 2-core machine, the demo clip ran at 13.4 frames/s with 1 thread and 1.1 with 2.
    The CLI uses 1; a library call leaves the process-wide settings alone unless asked.
    """
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    set_onnx_threads(threads)


def drop_nested(detections: list[Detection]) -> list[Detection]:
    """The detections without those whose box lies mostly (`_NESTED` of its area) inside a
    larger detection's box: a face holds no smaller face, so such a box is a part of the
    face (mouth and chin, an eye) that the detector also took for one."""
    kept = []
    by_size = sorted(detections, key=lambda d: -d.box[2] * d.box[3])
    for i, inner in enumerate(by_size):
        x, y, w, h = inner.box
        for outer in by_size[:i]:
            ox, oy, ow, oh = outer.box
            iw = max(0, min(x + w, ox + ow) - max(x, ox))
            ih = max(0, min(y + h, oy + oh) - max(y, oy))
            if iw * ih >= _NESTED * w * h:
                break
        else:
            kept.append(inner)
    return [d for d in detections if d in kept]


def _clip(box, shape) -> tuple[int, int, int, int] | None:
    """An (x, y, w, h) box rounded and clipped to the frame; None if too little is left."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(shape[1], round(x + w)), min(shape[0], round(y + h))
    if x1 - x0 < _MIN_SIDE or y1 - y0 < _MIN_SIDE:
        return None
    return (x0, y0, x1 - x0, y1 - y0)
