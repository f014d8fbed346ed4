"""What every face detector returns and shares: `Detection`, the `FaceDetector` protocol,
and the downscale / rescale steps around detecting on a shrunk frame. Its own module so the
detectors (`faces`, `mtcnn`) import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A face box (x, y, w, h) in image pixels, the detector's confidence in [0, 1] and,
    where the detector finds them, five landmarks (x, y) in image pixels: the eyes, the
    nose tip and the mouth corners, image-left before image-right (MTCNN, YuNet). The
    landmarks align the face onto the training framing (`ferkit.infer.align`)."""

    box: tuple[int, int, int, int]
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None

    def moved(self, dx: float, dy: float, scale: float) -> Detection:
        """This detection found in a window at offset (dx, dy), shrunk by `scale`, in the
        coordinates of the full frame (the box is rounded; landmarks stay exact)."""
        x, y, w, h = self.box
        box = (x / scale + dx, y / scale + dy, w / scale, h / scale)
        landmarks = None
        if self.landmarks is not None:
            landmarks = tuple((px / scale + dx, py / scale + dy) for px, py in self.landmarks)
        return Detection(tuple(int(round(v)) for v in box), self.score, landmarks)


FaceSizes = tuple[float, float]  # (smallest, largest) face side in the image's pixels


class FaceDetector(Protocol):
    """Anything that finds faces in a BGR (or gray) uint8 image; `face_sizes` is a hint
    (faces outside it may be skipped, never required to be)."""

    name: str

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]: ...


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """The image shrunk so its longer side is at most `max_side`, and the factor used."""
    import cv2

    longest = max(image.shape[:2])
    if not max_side or longest <= max_side:
        return image, 1.0
    factor = max_side / longest
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def rescale(
    boxes: np.ndarray, scores: np.ndarray, factor: float, shape, landmarks=None
) -> list[Detection]:
    """Boxes (and (N, 5, 2) landmarks) found on a downscaled frame → Detections in the
    original frame, boxes clipped to it."""
    height, width = shape[:2]
    points = None if landmarks is None else np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    out = []
    for i, ((x, y, w, h), score) in enumerate(
        zip(np.asarray(boxes, dtype=np.float64) / factor, scores, strict=True)
    ):
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            marks = None if points is None else tuple(map(tuple, (points[i] / factor).tolist()))
            out.append(Detection((x0, y0, x1 - x0, y1 - y0), float(score), marks))
    return out
