"""Face crop → model input: the ONE definition shared by training, evaluation and inference.

A classifier is only as good as the match between what it saw in training and what it is
fed later. Training reads 48×48 grayscale uint8 faces from the HDF5 store; inference cuts
faces out of photos and frames. Both end in `normalize()`, and inference reaches the same
48×48 grayscale crop through `crop_face()`, with the settings recorded in every checkpoint
(`Preprocessing.to_dict()`), so a model always gets the input it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

FER_SIZE = 48


@dataclass(frozen=True)
class Preprocessing:
    """How a face becomes a model input; stored in checkpoints and ONNX metadata.

    mean/std are in [0, 1] pixel units (the training split's statistics from the store).
    `equalize` applies histogram equalisation to live face crops (FER-2013 faces are
    contrast-stretched; raw camera faces are not). `margin` widens a detector's box by
    that fraction of its size on each side before cropping.
    """

    size: int = FER_SIZE
    mean: float = 0.5
    std: float = 0.25
    equalize: bool = False
    margin: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 view of an image that is already gray, BGR or BGRA (OpenCV order)."""
    import cv2

    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        gray = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    else:
        raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    return gray


def resize_gray(gray: np.ndarray, size: int = FER_SIZE) -> np.ndarray:
    """Resize a grayscale image to size×size (area averaging when shrinking)."""
    import cv2

    if gray.shape == (size, size):
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interpolation)


def crop_face(
    image: np.ndarray,
    box: tuple[int, int, int, int] | None,
    prep: Preprocessing,
) -> np.ndarray:
    """Cut a face (x, y, w, h) out of an image as a size×size grayscale uint8 crop.

    The box is widened by `prep.margin`, made square around its centre (faces in FER-2013
    are square crops) and clipped to the image; `box=None` uses the whole image.
    """
    import cv2

    gray = to_gray(image)
    if box is not None:
        x, y, w, h = box
        side = max(w, h) * (1.0 + 2.0 * prep.margin)
        cx, cy = x + w / 2.0, y + h / 2.0
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        x1, y1 = int(round(cx + side / 2)), int(round(cy + side / 2))
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, gray.shape[1]), min(y1, gray.shape[0])
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"face box {box} lies outside the image of shape {gray.shape}")
        gray = gray[y0:y1, x0:x1]
    face = resize_gray(gray, prep.size)
    if prep.equalize:
        face = cv2.equalizeHist(face)
    return np.ascontiguousarray(face)


def normalize(batch_uint8, prep: Preprocessing):
    """uint8 faces (N, H, W) → float32 model input (N, 1, H, W), standardised.

    Accepts a numpy array or a torch tensor (on any device) and returns the same kind, so
    the training loop normalises on its device and inference on the CPU with one formula.
    """
    scale = 1.0 / (255.0 * prep.std)
    shift = prep.mean / prep.std
    if isinstance(batch_uint8, np.ndarray):
        x = batch_uint8.astype(np.float32) * np.float32(scale) - np.float32(shift)
        return x[:, None, :, :]
    x = batch_uint8.float() * scale - shift
    return x.unsqueeze(1)
