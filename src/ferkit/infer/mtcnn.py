"""MTCNN face detection (Zhang et al., 2016) in pure PyTorch with facenet-pytorch's weights.

The `facenet-pytorch` package ships the three trained networks as state dicts
(`facenet_pytorch/data/{pnet,rnet,onet}.pt`), but its code imports torchvision and pins an
old torch. So ferkit rebuilds P-Net, R-Net and O-Net here with the same parameter names,
loads those files directly (install the package with `pip install --no-deps
facenet-pytorch`), and runs the cascade with numpy box arithmetic instead of torchvision:

1. P-Net slides over an image pyramid and proposes boxes (threshold, NMS per scale and
   overall, box regression, squared);
2. R-Net rescores 24×24 crops of the proposals (threshold, NMS, regression, squared);
3. O-Net rescores 48×48 crops (threshold, regression, NMS by the smaller box's area) and
   places five landmarks (eyes, nose tip, mouth corners), which alignment uses.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ferkit.errors import ModelError
from ferkit.infer.detection import Detection, FaceSizes, downscale, rescale


class PNet(nn.Module):
    """Proposal network: fully convolutional, 12×12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """Refinement network on 24×24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights come from TensorFlow: flatten in (w, h, c) order.
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output network on 48×48 crops: box regression, face score and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), torch.softmax(self.dense6_1(x), dim=1), self.dense6_3(x)


def weights_dir() -> Path:
    """Where facenet-pytorch keeps pnet.pt/rnet.pt/onet.pt (found without importing it)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise ModelError(
            "the mtcnn detector needs the weights shipped in facenet-pytorch: "
            "pip install --no-deps facenet-pytorch"
        )
    return Path(spec.origin).parent / "data"


def net_input(images: np.ndarray, device: str) -> torch.Tensor:
    """(N, h, w, 3) float RGB crops → the networks' input: scaled to about [-1, 1], NCHW
    over channels_last memory (no copy)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return ((x - 127.5) * 0.0078125).to(device)


def load_net(net: nn.Module, path: Path, device: str) -> nn.Module:
    if not path.is_file():
        raise ModelError(f"MTCNN weight file missing: {path}")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # channels_last: ~2× faster max-pooling and 3-channel convolutions on CPU.
    return net.to(device, memory_format=torch.channels_last).eval()


class MTCNNDetector:
    """Three-stage MTCNN; `min_face` in pixels of the original frame."""

    name = "mtcnn"

    def __init__(
        self,
        min_face: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        max_side: int | None = 640,
        device: str = "cpu",
    ) -> None:
        folder = weights_dir()
        self.pnet = load_net(PNet(), folder / "pnet.pt", device)
        self.rnet = load_net(RNet(), folder / "rnet.pt", device)
        self.onet = load_net(ONet(), folder / "onet.pt", device)
        self.min_face, self.thresholds, self.factor = min_face, thresholds, factor
        self.max_side, self.device = max_side, device

    @torch.inference_mode()
    def detect(self, image: np.ndarray, face_sizes: FaceSizes | None = None) -> list[Detection]:
        import cv2

        small, scale = downscale(image, self.max_side)
        if small.ndim == 2:
            rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(small[:, :, :3], cv2.COLOR_BGR2RGB)
        rgb = rgb.astype(np.float32)
        smallest, largest = self.min_face * scale, np.inf
        if face_sizes is not None:
            smallest, largest = max(smallest, face_sizes[0] * scale), face_sizes[1] * scale
        boxes = self._propose(rgb, max(smallest, 12.0), largest)
        boxes = self._refine(rgb, boxes, self.rnet, 24, self.thresholds[1], "union")
        boxes = self._refine(rgb, boxes, self.onet, 48, self.thresholds[2], "min")
        xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0],
                                boxes[:, 3] - boxes[:, 1]])  # fmt: skip
        return rescale(xywh, boxes[:, 4], scale, image.shape, boxes[:, 5:15])

    def _propose(self, rgb: np.ndarray, min_face: float, max_face: float) -> np.ndarray:
        """Stage 1 over the pyramid (faces of min_face to max_face pixels) → squared
        candidate boxes (x1, y1, x2, y2, score)."""
        import cv2

        height, width = rgb.shape[:2]
        scale, side = 12.0 / min_face, min(height, width) * 12.0 / min_face
        found = []
        while side >= 12 and 12.0 / scale <= max_face:
            size = (int(width * scale + 1), int(height * scale + 1))
            level = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            reg, prob = self.pnet(net_input(level[None], self.device))
            boxes = _pnet_boxes(reg[0].cpu().numpy(), prob[0, 1].cpu().numpy(), scale,
                                self.thresholds[0])  # fmt: skip
            found.append(boxes[nms(boxes, 0.5, "union")])
            scale, side = scale * self.factor, side * self.factor
        boxes = np.concatenate(found) if found else np.zeros((0, 9))
        boxes = boxes[nms(boxes, 0.7, "union")]
        width_, height_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        offsets = boxes[:, 5:9] * np.column_stack([width_, height_, width_, height_])
        return square_boxes(np.column_stack([boxes[:, :4] + offsets, boxes[:, 4]]))

    def _refine(self, rgb, boxes, net, size, threshold, method) -> np.ndarray:
        """Stages 2 and 3: rescore crops, keep, regress, NMS. Stage 3 ("min") returns
        (x1, y1, x2, y2, score, 5 landmark (x, y) pairs) rows."""
        if len(boxes) == 0:
            return np.zeros((0, 5 if method == "union" else 15))
        crops, kept = square_crops(rgb, boxes, size)
        if not kept:
            return np.zeros((0, 5 if method == "union" else 15))
        boxes = boxes[kept]
        reg, prob, *points = net(net_input(crops, self.device))
        score, reg = prob[:, 1].cpu().numpy(), reg.cpu().numpy()
        keep = score > threshold
        boxes = np.column_stack([boxes[keep, :4], score[keep]])
        reg = reg[keep]
        if method == "union":
            pick = nms(boxes, 0.7, "union")
            return square_boxes(_regress(boxes[pick], reg[pick]))
        marks = onet_landmarks(boxes, points[0].cpu().numpy()[keep])
        boxes = np.column_stack([_regress(boxes, reg), marks])
        return boxes[nms(boxes, 0.7, "min")]


def _pnet_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net output map → boxes (x1, y1, x2, y2, score, 4 regression offsets) in the image."""
    ys, xs = np.nonzero(prob >= threshold)
    cells = np.column_stack([xs, ys]).astype(np.float64)
    q1 = np.floor((2 * cells + 1) / scale)
    q2 = np.floor((2 * cells + 12) / scale)
    return np.column_stack([q1, q2, prob[ys, xs], reg[:, ys, xs].T]).reshape(-1, 9)


def onet_landmarks(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """O-Net's landmark outputs (x1..x5, y1..y5 as fractions of the box it saw) → (N, 10)
    image coordinates ordered x1, y1, ..., x5, y5 (facenet-pytorch's formula)."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    xs = w * points[:, :5] + boxes[:, 0:1] - 1
    ys = h * points[:, 5:10] + boxes[:, 1:2] - 1
    return np.stack([xs, ys], axis=2).reshape(-1, 10)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg * np.column_stack([w, h, w, h])
    return out


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2, ...) rows → the squares of the longer side around the same centres
    (other columns kept)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2], out[:, 3] = out[:, 0] + side, out[:, 1] + side
    return out


def square_crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, list[int]]:
    """size×size crops of the boxes (clipped to the image); indices of boxes that had pixels."""
    import cv2

    height, width = rgb.shape[:2]
    crops, kept = [], []
    for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(int)):
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if x2 - x1 >= 1 and y2 - y1 >= 1:
            crops.append(cv2.resize(rgb[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA))
            kept.append(i)
    return (np.stack(crops) if crops else np.zeros((0, size, size, 3), np.float32)), kept


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by non-maximum suppression of (x1, y1, x2, y2, score, ...) rows.

    `method="min"` divides the overlap by the smaller box's area (MTCNN's last stage).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score)[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=int)
