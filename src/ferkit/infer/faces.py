"""Face detectors behind one protocol: `detect(image_bgr) -> list[Detection]`.

- `haar`: OpenCV's frontal-face cascade (ships with opencv-python). Fast on a CPU, run on
  an equalised, downscaled frame; an optional eye check rejects boxes on objects.
- `mtcnn`: the three-stage MTCNN in pure PyTorch (`ferkit.infer.mtcnn`), with the weights
  that the `facenet-pytorch` package ships. Slower, finds more turned and small faces.
- `yunet`: OpenCV's `FaceDetectorYN` with a model file the user supplies.
- `none`: the whole image is the face (inputs that are already face crops).

Every detector shrinks large frames to `max_side` pixels before detecting (speed, and huge
photos) and returns boxes in the original frame's pixels. `face_sizes` narrows the search to
faces of a known size (the recognizer re-detecting a tracked face in a small window): Haar
and MTCNN skip every other scale, which is most of their cost; YuNet and `none` ignore it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ferkit.errors import ConfigError, ModelError

DETECTORS = ("haar", "mtcnn", "yunet", "none")


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


def _rescale(
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


class HaarDetector:
    """OpenCV Haar cascade with parameters tuned for faces in photos and webcam frames.

    `min_size` is in pixels of the downscaled frame; `eye_check` keeps only boxes in whose
    upper part an eye cascade fires (rejects faces "seen" in textures, at some recall cost).
    The cascade reports no confidence, so every detection scores 1.
    """

    name = "haar"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_side: int | None = 480,
        eye_check: bool = False,
        cascade: str = "haarcascade_frontalface_alt2.xml",
    ) -> None:
        import cv2

        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side, self.eye_check = min_size, max_side, eye_check
        self._faces = _load_cascade(cascade)
        self._eyes = _load_cascade("haarcascade_eye.xml") if eye_check else None
        self._cv2 = cv2

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        from ferkit.preprocess import to_gray

        cv2 = self._cv2
        small, factor = downscale(to_gray(image), self.max_side)
        gray = cv2.equalizeHist(small)
        smallest, largest = self.min_size, 0  # 0: no upper limit
        if face_sizes is not None:
            smallest = max(smallest, int(face_sizes[0] * factor))
            largest = max(smallest, int(np.ceil(face_sizes[1] * factor)))
        boxes = self._faces.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(smallest, smallest),
            maxSize=(largest, largest),
        )
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self._eyes is not None:
            boxes = np.array([b for b in boxes if self._has_eye(gray, b)]).reshape(-1, 4)
        return _rescale(boxes, np.ones(len(boxes)), factor, image.shape)

    def _has_eye(self, gray: np.ndarray, box: np.ndarray) -> bool:
        x, y, w, h = (int(v) for v in box)
        upper = gray[y : y + int(h * 0.6), x : x + w]
        eyes = self._eyes.detectMultiScale(
            upper, scaleFactor=1.1, minNeighbors=3, minSize=(max(w // 8, 6), max(w // 8, 6))
        )
        return len(eyes) > 0


def _load_cascade(filename: str):
    import cv2

    path = Path(cv2.data.haarcascades) / filename
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ModelError(f"cannot load the OpenCV Haar cascade {path}")
    return cascade


class YuNetDetector:
    """OpenCV's YuNet (`cv2.FaceDetectorYN`) with a user-supplied .onnx model file."""

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
    ) -> None:
        import cv2

        if model_path is None or not Path(model_path).is_file():
            raise ModelError(
                f"the yunet detector needs its model file (face_detection_yunet_*.onnx from the "
                f"OpenCV model zoo); not found: {model_path}"
            )
        self.max_side = max_side
        self._size = (320, 320)
        self._net = cv2.FaceDetectorYN.create(
            str(model_path), "", self._size, score_threshold, nms_threshold, 5000
        )

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        import cv2

        small, factor = downscale(image, self.max_side)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None:
            return []
        return _rescale(faces[:, :4], faces[:, 14], factor, image.shape, faces[:, 4:14])


class WholeImage:
    """No detection: the whole image is one face (for inputs that are already crops)."""

    name = "none"

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        return [Detection((0, 0, int(image.shape[1]), int(image.shape[0])), 1.0)]


def create_detector(name: str = "haar", **kwargs) -> FaceDetector:
    """A detector by name ("haar", "mtcnn", "yunet", "none") with its keyword options."""
    if name == "haar":
        return HaarDetector(**kwargs)
    if name == "mtcnn":
        from ferkit.infer.mtcnn import MTCNNDetector

        return MTCNNDetector(**kwargs)
    if name == "yunet":
        return YuNetDetector(**kwargs)
    if name == "none":
        if kwargs:
            raise ConfigError(f"the 'none' detector takes no options, got {sorted(kwargs)}")
        return WholeImage()
    raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
