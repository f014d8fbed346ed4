"""Faces framed as the model saw them in training: one face crop for every caller.

FER-2013 faces have one particular framing: where the eyes, nose and mouth sit in the
48×48 frame, how much forehead and chin it holds. A detector's box has another, and a
tilted head puts the eyes off the level. `face_crop` maps each detection onto the
training framing recorded in the model's `Preprocessing` (`align="template"`):

- with landmarks and a measured box frame (MTCNN): the frame centred halfway between
  where the landmark fit and the box frame put it, its side the geometric mean of theirs,
  turned so that the eyes are level (`eye_roll`). The landmark fit is the similarity
  transform (rotation, uniform scale, shift; least squares over the eyes and the nose tip,
  `ALIGN_POINTS`) that carries them onto `prep.template`, the median landmark positions
  MTCNN finds in FER-2013 training faces; the box frame is the frame placed relative to
  the box as FER-2013 faces place it for that detector (`prep.box_frames`, measured the
  same way). Each alone puts the frame's centre about 3.5 px (of 48) off the true
  frame's, partly independently; their mean 3.0–3.2 px (benchmarks/wild.py, docs/faces.md);
- with landmarks but no box frame (YuNet), and with `align="similarity"` (the default
  before): the landmark fit alone;
- without landmarks (Haar): the box frame;
- otherwise, and with `align="box"` (the old crop): the box widened by `prep.margin`.

`measure_framing` is the measurement itself: run a detector over upscaled FER-2013 faces
and record where it puts the landmarks and the box in the 48×48 frame
(benchmarks/framing.py prints and stores it; the numbers live in `ferkit.preprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferkit.preprocess import Preprocessing, crop_face, equalize_crop, to_gray

# The landmarks the similarity is fitted to: the eyes and the nose tip. The mouth corners
# move with the expression (a smile widens the mouth, surprise drops it), so fitting them
# too would frame faces by their expression; on benchmarks/wild.py's scenes (486 faces
# MTCNN found) eyes + nose gave 59.5 % against 58.2 % with all five.
ALIGN_POINTS = (0, 1, 2)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform (no shear, no reflection) that maps the points `src`
    onto `dst` with the least squared error."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    # x' = a·x − b·y + tx,  y' = b·x + a·y + ty: linear in (a, b, tx, ty).
    rows = np.zeros((2 * len(src), 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def frame_transform(
    box: Sequence[float],
    landmarks: Sequence[Sequence[float]] | None,
    prep: Preprocessing,
    detector: str | None,
    points: Sequence[int] = ALIGN_POINTS,
) -> np.ndarray | None:
    """The 2×3 map from image pixels to the model's size×size frame for one face, or None
    where the face is cut with the plain box crop (see the module docstring)."""
    if prep.align == "box":
        return None
    size = prep.size
    frame = prep.box_frames.get(detector or "")
    if landmarks is not None and prep.template:
        chosen = list(points)
        target = np.asarray(prep.template)[chosen] * size
        fit = similarity(np.asarray(landmarks)[chosen], target)
        if prep.align == "similarity" or frame is None:
            return fit
        # "template": the landmark fit and the box frame each put the centre about 3.5 px
        # off (benchmarks/wild.py), partly independently, so their mean is closer
        fit_centre, fit_side, _ = frame_geometry(fit, size)
        box_centre, box_side = box_frame(box, frame)
        centre = (np.asarray(fit_centre) + np.asarray(box_centre)) / 2
        return frame_at(centre, float(np.sqrt(fit_side * box_side)), eye_roll(landmarks), size)
    if frame is None:
        return None
    centre, side = box_frame(box, frame)
    return frame_at(centre, side, 0.0, size)


def box_frame(box: Sequence[float], frame: Sequence[float]) -> tuple[tuple[float, float], float]:
    """Centre and side (image pixels) of the frame that a box frame (dx, dy, side in units
    of the box's longer side, `Preprocessing.box_frames`) places around `box`."""
    dx, dy, scale = frame
    x, y, w, h = (float(v) for v in box)
    side = max(w, h)
    return (x + w / 2 + dx * side, y + h / 2 + dy * side), scale * side


def frame_at(centre: Sequence[float], side: float, roll: float, size: int) -> np.ndarray:
    """The 2×3 map from image pixels to a size×size frame: the square of `side` image
    pixels centred at `centre`, turned by `roll` degrees (the head's roll in the image,
    clockwise on screen, as `eye_roll` measures it) so that it comes out upright."""
    k = size / side
    t = np.deg2rad(roll)
    c, s = np.cos(t), np.sin(t)
    linear = k * np.array([[c, s], [-s, c]])
    shift = np.array([size / 2, size / 2]) - linear @ np.asarray(centre, dtype=np.float64)
    return np.column_stack([linear, shift])


def eye_roll(landmarks: Sequence[Sequence[float]]) -> float:
    """The head's roll in degrees from the line through the eyes (landmarks 0 and 1, the
    image-left eye first): 0 when level, positive when the right one sits lower."""
    (x0, y0), (x1, y1) = np.asarray(landmarks, dtype=np.float64)[:2]
    return float(np.rad2deg(np.arctan2(y1 - y0, x1 - x0)))


def frame_geometry(transform: np.ndarray, size: int) -> tuple[tuple[float, float], float, float]:
    """Centre, side and roll (as `frame_at` takes them) of a similarity image → frame map."""
    a, b = transform[0, 0], transform[1, 0]
    k = float(np.hypot(a, b))
    inverse = np.linalg.inv(np.vstack([transform, [0.0, 0.0, 1.0]]))
    cx, cy = (inverse @ [size / 2, size / 2, 1.0])[:2]
    return (float(cx), float(cy)), size / k, float(np.rad2deg(np.arctan2(-b, a)))


OVERSAMPLE = 4  # at most this many samples per frame pixel and axis, then area-averaged


def warp_face(
    gray: np.ndarray, transform: np.ndarray, size: int, oversample: int | None = None
) -> np.ndarray:
    """The size×size frame that `transform` (image → frame) cuts out of a gray image.

    A face larger than the frame is sampled on a grid `oversample` times finer than the
    frame (by default as many times as the image has pixels per frame pixel, 1 to
    `OVERSAMPLE`), then area-averaged down: each frame pixel is the mean of the image
    under it, rotated or not. Sampling bilinearly straight into the frame blurs twice
    (the shrink, then the interpolation between its pixels at sub-pixel positions). On
    FER-2013 test faces rotated, scaled and shifted into a larger image and cut back out,
    the mean pixel error against the original face was 8.6 instead of 10.2 at 2× and 11.4
    instead of 12.1 at 4×; at 1× (no finer grid) it stays 5.4 — a finer grid there only
    adds blur (12.0). A face much larger than the fine grid is first shrunk with area
    averaging, so the warp samples at about 1:1 and does not alias; pixels beyond the
    image repeat its border.
    """
    import cv2

    if oversample is None:
        per_pixel = 1.0 / max(float(np.sqrt(abs(np.linalg.det(transform[:, :2])))), 1e-9)
        oversample = int(min(OVERSAMPLE, max(1.0, np.floor(per_pixel))))
    fine = size * oversample
    m = np.vstack([np.diag([oversample, oversample]) @ transform, [0.0, 0.0, 1.0]])
    scale = float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    if scale < 1.0:
        inverse = np.linalg.inv(m)
        corners = np.array([[0, 0, 1], [fine, 0, 1], [0, fine, 1], [fine, fine, 1]], float)
        xs, ys = (inverse @ corners.T)[:2]
        x0, y0 = max(int(np.floor(xs.min())) - 2, 0), max(int(np.floor(ys.min())) - 2, 0)
        x1 = min(int(np.ceil(xs.max())) + 2, gray.shape[1])
        y1 = min(int(np.ceil(ys.max())) + 2, gray.shape[0])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = gray[y0:y1, x0:x1]
            height, width = region.shape
            shrunk = (max(1, round(width * scale)), max(1, round(height * scale)))
            gray = cv2.resize(region, shrunk, interpolation=cv2.INTER_AREA)
            fx, fy = shrunk[0] / width, shrunk[1] / height
            m = m @ np.linalg.inv(np.array([[fx, 0, -fx * x0], [0, fy, -fy * y0], [0, 0, 1]]))
    frame = cv2.warpAffine(
        gray, m[:2], (fine, fine), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if oversample == 1:
        return frame
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def face_crop(image: np.ndarray, detection, prep: Preprocessing, detector: str | None):
    """The model input crop (size×size gray uint8) of one detection (`ferkit.infer.faces.
    Detection`, or None for the whole image): the ONE crop of predict, stream, evaluate
    --folder, explain and serve."""
    if detection is None:
        return crop_face(image, None, prep)
    transform = frame_transform(detection.box, detection.landmarks, prep, detector)
    if transform is None:
        return crop_face(image, detection.box, prep)
    return equalize_crop(warp_face(to_gray(image), transform, prep.size), prep)


# ---------------------------------------------------------------------- measurement
@dataclass
class Framing:
    """Where a detector puts faces in FER-2013's frame, from `measure_framing`.

    landmarks: (N, 5, 2) in fractions of the frame (NaN where no landmarks); boxes: (N, 3)
    frame centre offset (dx, dy) and frame side, in units of the box's longer side (the
    `Preprocessing.box_frames` convention); found: per face, whether it was detected.
    """

    detector: str
    found: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray

    def template(self) -> tuple[tuple[float, float], ...]:
        """Median landmark positions, made left-right symmetric (training flips faces, so
        the model knows both mirror images of the framing)."""
        points = np.nanmedian(self.landmarks[self.found], axis=0)
        mirrored = points[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
        both = (points + mirrored) / 2
        return tuple((round(float(x), 4), round(float(y), 4)) for x, y in both)

    def box_frame(self) -> tuple[float, float, float]:
        """Median (dx, dy, side) of the frame relative to the box; dx is 0 by symmetry."""
        dx, dy, side = np.median(self.boxes[self.found], axis=0)
        return (0.0, round(float(dy), 4), round(float(side), 4))

    def summary(self) -> dict:
        """Detection rate, the template, the box frame and their spreads (IQR)."""
        found = self.found
        out = {"detector": self.detector, "faces": int(len(found)), "found": int(found.sum())}
        q1, q3 = np.nanpercentile(self.boxes[found], [25, 75], axis=0)
        out["box_frame"] = {"median": list(self.box_frame()), "iqr": (q3 - q1).round(4).tolist()}
        if not np.isnan(self.landmarks[found]).all():
            q1, q3 = np.nanpercentile(self.landmarks[found], [25, 75], axis=0)
            raw = np.nanmedian(self.landmarks[found], axis=0)
            out["template"] = {"median": [list(p) for p in self.template()],
                               "raw_median": raw.round(4).tolist(),
                               "iqr": (q3 - q1).round(4).tolist()}  # fmt: skip
        return out


def measure_framing(faces: np.ndarray, detector, upscale: int = 4, pad: float = 0.5) -> Framing:
    """Run `detector` over FER-style (N, s, s) uint8 faces, each upscaled `upscale`× and
    set in a mid-gray border of `pad` frame sides (detectors need some context around a
    face), and record where it finds the face relative to the original frame."""
    import cv2

    n, side = len(faces), faces.shape[1]
    big, border = side * upscale, int(round(side * upscale * pad))
    found = np.zeros(n, dtype=bool)
    landmarks = np.full((n, 5, 2), np.nan)
    boxes = np.full((n, 3), np.nan)
    for i, face in enumerate(faces):
        scaled = cv2.resize(face, (big, big), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(scaled, *[border] * 4, cv2.BORDER_CONSTANT, value=128)
        centre = border + big / 2
        hits = [
            d for d in detector.detect(canvas)
            if abs(d.box[0] + d.box[2] / 2 - centre) < big / 4
            and abs(d.box[1] + d.box[3] / 2 - centre) < big / 4
        ]  # fmt: skip
        if not hits:
            continue
        best = max(hits, key=lambda d: d.box[2] * d.box[3])
        x, y, w, h = best.box
        longest = max(w, h)
        boxes[i] = ((centre - x - w / 2) / longest, (centre - y - h / 2) / longest, big / longest)
        if best.landmarks is not None:
            landmarks[i] = (np.asarray(best.landmarks) - border) / big
        found[i] = True
    return Framing(getattr(detector, "name", "?"), found, landmarks, boxes)
