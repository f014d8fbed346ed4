"""Face crop → model input: the ONE definition shared by training, evaluation and inference.

A classifier is only as good as the match between what it saw in training and what it is
fed later. Training reads 48×48 grayscale uint8 faces from the HDF5 store; inference cuts
faces out of photos and frames. Both end in `normalize()`, and inference reaches the same
48×48 grayscale crop through `crop_face()`, with the settings recorded in every checkpoint
(`Preprocessing.to_dict()`), so a model always gets the input it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ferkit.errors import ConfigError

FER_SIZE = 48
ALIGN_MODES = ("template", "similarity", "box")

# Where MTCNN finds the eyes, nose tip and mouth corners (image-left first) in FER-2013
# training faces, as fractions of the frame: the median over the faces it detects, made
# left-right symmetric. Measured by `python benchmarks/framing.py` (results/framing.json):
# 3,000 training faces upscaled 4×, MTCNN found 2,747; spread (IQR) 0.06–0.09 per point.
FER_TEMPLATE = (
    (0.3109, 0.3873), (0.6891, 0.3873), (0.5, 0.5968), (0.3382, 0.7831), (0.6618, 0.7831),
)  # fmt: skip
# Where the FER-2013 frame lies relative to each detector's box on the same faces: centre
# offset (dx, dy) and side, in units of the box's longer side (same script; Haar found
# 1,725 of the 3,000, side IQR 0.15; MTCNN's side IQR 0.19).
FER_BOX_FRAMES = {"haar": (0.0, 0.0077, 1.0492), "mtcnn": (0.0, -0.0115, 0.9505)}


@dataclass(frozen=True)
class Preprocessing:
    """How a face becomes a model input; stored in checkpoints and ONNX metadata.

    mean/std are in [0, 1] pixel units (the training split's statistics from the store).
    `equalize` applies histogram equalisation to live face crops (FER-2013 faces are
    contrast-stretched; raw camera faces are not). `align` says how a detected face is
    framed (`ferkit.infer.align`) onto the framing of the training faces: "template" from
    its landmarks (fitted onto `template`) and its box (`box_frames[detector]`) together,
    eyes levelled, or from whichever of the two the detector gives; "similarity" from the
    landmarks alone where there are any (the "template" of checkpoints made before
    2026-12-02; those now get the combined framing); "box" cuts the detector's box widened
    by `margin` of its size on each side. Checkpoints from before alignment load with the
    FER-2013 template, which is what they trained on.
    """

    size: int = FER_SIZE
    mean: float = 0.5
    std: float = 0.25
    equalize: bool = False
    margin: float = 0.0
    align: str = "template"
    template: tuple[tuple[float, float], ...] = FER_TEMPLATE
    box_frames: dict[str, tuple[float, float, float]] = field(
        default_factory=lambda: dict(FER_BOX_FRAMES), hash=False
    )

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            choices = " or ".join(ALIGN_MODES)
            raise ConfigError(f"unknown align mode {self.align!r}; choose {choices}")

    def to_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), so a stored copy equals a fresh one."""
        data = asdict(self)
        data["template"] = [list(point) for point in self.template]
        data["box_frames"] = {name: list(frame) for name, frame in self.box_frames.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "template" in values:  # JSON gives lists back
            values["template"] = tuple(tuple(float(c) for c in p) for p in values["template"])
        if "box_frames" in values:
            values["box_frames"] = {k: tuple(v) for k, v in values["box_frames"].items()}
        return cls(**values)


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
    are square crops) and clipped to the image; `box=None` uses the whole image. This is
    the `align="box"` crop; `ferkit.infer.align.face_crop` chooses between the two.
    """
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
    return equalize_crop(resize_gray(gray, prep.size), prep)


def equalize_crop(face: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The last step of every face crop: histogram equalisation where `prep` asks for it."""
    import cv2

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
