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

from pathlib import Path

import numpy as np

from ferkit.errors import ConfigError, ModelError
from ferkit.infer.detection import Detection, FaceDetector, FaceSizes, downscale, rescale

DETECTORS = ("haar", "mtcnn", "yunet", "none")


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
