"""Alignment onto the training framing: the transform, the crop, the stored template and
its measurement, all on synthetic faces whose landmarks are known exactly."""

import json

import cv2
import numpy as np
import pytest

from ferkit.errors import ConfigError
from ferkit.infer.align import (
    box_frame,
    eye_roll,
    face_crop,
    frame_at,
    frame_geometry,
    frame_transform,
    measure_framing,
    similarity,
    warp_face,
)
from ferkit.infer.faces import Detection
from ferkit.preprocess import FER_BOX_FRAMES, FER_TEMPLATE, Preprocessing, crop_face

TEMPLATE = np.asarray(FER_TEMPLATE)


def synthetic_face(size: int = 48) -> np.ndarray:
    """A gray face-like pattern with dark blobs at the template's five landmarks."""
    face = np.full((size, size), 200, np.uint8)
    cv2.ellipse(face, (size // 2, size // 2), (size // 2 - 2, size // 2), 0, 0, 360, 150, -1)
    for x, y in TEMPLATE * size:
        cv2.circle(face, (int(round(x)), int(round(y))), max(2, size // 16), 20, -1)
    return face


def place(face: np.ndarray, angle: float, scale: float, centre, shape=(360, 480)):
    """The face rotated by `angle`°, scaled and centred at `centre` in a larger frame;
    returns the frame and the 2×3 map from face pixels to frame pixels."""
    side = face.shape[0]
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
    m[:, 2] += np.asarray(centre) - side / 2
    frame = cv2.warpAffine(face, m, shape[::-1], flags=cv2.INTER_CUBIC, borderValue=90)
    return frame, m


def test_similarity_recovers_rotation_scale_and_shift():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 50, (5, 2))
    m = cv2.getRotationMatrix2D((10, 20), 23.0, 2.7)
    m[:, 2] += (40, -7)
    moved = points @ m[:, :2].T + m[:, 2]
    assert np.allclose(similarity(points, moved), m, atol=1e-9)


def mtcnn_box(centre, side: float) -> tuple[int, int, int, int]:
    """The box MTCNN's box frame maps onto a frame of `side` pixels centred at `centre`."""
    dx, dy, scale = FER_BOX_FRAMES["mtcnn"]
    longest = side / scale
    cx, cy = centre[0] - dx * longest, centre[1] - dy * longest
    return (int(round(cx - longest / 2)), int(round(cy - longest / 2)), int(round(longest)),
            int(round(longest)))  # fmt: skip


@pytest.mark.parametrize("align", ["template", "similarity"])
@pytest.mark.parametrize("angle", [-25.0, 0.0, 18.0])
def test_landmarks_align_a_rolled_face_onto_the_template(angle, align):
    """A face rolled and enlarged in a photo comes back as the training framing: the
    aligned crop matches the original face far better than the box crop does."""
    face = synthetic_face()
    frame, m = place(face, angle, 3.4, (250, 170))
    landmarks = TEMPLATE * 48 @ m[:, :2].T + m[:, 2]
    if align == "template":  # the box the detector's box frame maps onto the face's frame
        box = mtcnn_box((250, 170), 48 * 3.4)
    else:  # similarity ignores the box: any box around the face
        corners = np.array([[0, 0], [48, 0], [0, 48], [48, 48]]) @ m[:, :2].T + m[:, 2]
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        box = tuple(int(v) for v in (x0, y0, x1 - x0, y1 - y0))
    detection = Detection(box, 1.0, tuple(map(tuple, landmarks)))
    aligned = face_crop(frame, detection, Preprocessing(align=align), "mtcnn")
    boxed = face_crop(frame, detection, Preprocessing(align="box"), "mtcnn")
    assert aligned.shape == (48, 48) and aligned.dtype == np.uint8
    error = np.abs(aligned.astype(int) - face).mean()
    assert error < 8
    if angle:
        assert np.abs(boxed.astype(int) - face).mean() > 2 * error


def rolled_landmarks(angle: float, scale: float, centre) -> np.ndarray:
    """The template's five points on a face rolled `angle`° (clockwise on screen, as
    `eye_roll` counts it), `scale` × 48 pixels wide, centred at `centre`."""
    t = np.deg2rad(angle)
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (TEMPLATE - 0.5) * 48 * scale @ turn.T + np.asarray(centre)


def flat(geometry) -> tuple:
    """`frame_geometry`'s ((x, y), side, roll) as (x, y, side, roll)."""
    (x, y), side, roll = geometry
    return (x, y, side, roll)


@pytest.mark.parametrize("angle", [-20.0, 0.0, 12.0])
def test_eye_roll_and_frame_at_level_the_eyes(angle):
    points = rolled_landmarks(angle, 2.5, (300, 200))
    assert eye_roll(points) == pytest.approx(angle, abs=1e-6)
    m = frame_at((300, 200), 120.0, eye_roll(points), 48)
    eyes = points[:2] @ m[:, :2].T + m[:, 2]
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-6)  # level
    assert eyes[1, 0] - eyes[0, 0] == pytest.approx(np.ptp(TEMPLATE[:2, 0]) * 48, abs=1e-6)
    assert flat(frame_geometry(m, 48)) == pytest.approx((300, 200, 120.0, angle), abs=1e-6)


def test_mtcnn_frame_is_the_mean_of_landmark_fit_and_box_frame_with_eyes_levelled():
    """Landmarks say the frame is 100 px centred at (300, 200); the box frame says 144 px
    centred at (320, 190): the default frame lies halfway, √(100·144) = 120 px wide, turned
    by the eye line; "similarity" keeps the landmark fit alone."""
    points = rolled_landmarks(15.0, 100 / 48, (300, 200))
    box = mtcnn_box((320, 190), 144.0)
    boxed_centre, boxed_side = box_frame(box, FER_BOX_FRAMES["mtcnn"])
    m = frame_transform(box, points, Preprocessing(), "mtcnn")
    centre, side, roll = frame_geometry(m, 48)
    expected = (np.asarray(boxed_centre) + (300, 200)) / 2
    assert centre == pytest.approx(tuple(expected), abs=1e-6)
    assert side == pytest.approx(np.sqrt(100 * boxed_side), abs=1e-6)
    assert roll == pytest.approx(15.0, abs=1e-6)
    fit = frame_transform(box, points, Preprocessing(align="similarity"), "mtcnn")
    assert flat(frame_geometry(fit, 48)) == pytest.approx((300, 200, 100.0, 15.0), abs=1e-6)
    assert np.allclose(fit, similarity(points[:3], TEMPLATE[:3] * 48))


def test_landmarks_without_a_box_frame_and_a_box_without_landmarks():
    """YuNet (landmarks, no measured box frame) gets the landmark fit; Haar (a box frame,
    no landmarks) its box frame, rotation-free; "box" neither."""
    points = rolled_landmarks(-10.0, 2.0, (200, 150))
    box = (150, 100, 100, 100)
    yunet = frame_transform(box, points, Preprocessing(), "yunet")
    assert np.allclose(yunet, similarity(points[:3], TEMPLATE[:3] * 48))
    haar = frame_transform(box, None, Preprocessing(), "haar")
    centre, side = box_frame(box, FER_BOX_FRAMES["haar"])
    assert np.allclose(haar, frame_at(centre, side, 0.0, 48))
    assert haar[0, 1] == 0.0 and haar[1, 0] == 0.0
    assert frame_transform(box, points, Preprocessing(align="box"), "mtcnn") is None


def test_without_landmarks_the_detectors_box_frame_places_the_crop():
    """A detector with a fitted box frame (as Haar has) gets the frame it maps to; one
    without falls back to the box crop."""
    face = synthetic_face()
    frame, _ = place(face, 0.0, 2.0, (200, 150))  # the face spans x 152..248, y 102..198
    box = (162, 122, 76, 76)  # a detector's box: narrower, lower than the frame
    frames = {"fake": (0.0, (150 - 160) / 76, 96 / 76)}  # frame centre and side in box units
    prep = Preprocessing(box_frames=frames)
    crop = face_crop(frame, Detection(box), prep, "fake")
    assert np.abs(crop.astype(int) - face).mean() < 6
    other = face_crop(frame, Detection(box), prep, "other")
    assert np.array_equal(other, crop_face(frame, box, prep))


def test_equalisation_is_the_last_step_of_the_aligned_crop_too():
    face = (synthetic_face() // 4 + 60).astype(np.uint8)  # low contrast
    frame, m = place(face, 10.0, 2.0, (200, 150))
    landmarks = tuple(map(tuple, TEMPLATE * 48 @ m[:, :2].T + m[:, 2]))
    detection = Detection((150, 100, 100, 100), 1.0, landmarks)
    plain = face_crop(frame, detection, Preprocessing(), "mtcnn")
    equalized = face_crop(frame, detection, Preprocessing(equalize=True), "mtcnn")
    assert np.ptp(equalized) > 2 * np.ptp(plain)
    assert np.array_equal(equalized, cv2.equalizeHist(plain))


def test_template_travels_with_the_model_and_old_checkpoints_get_fer2013s():
    prep = Preprocessing(mean=0.4, template=((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8),
                                             (0.65, 0.8)))  # fmt: skip
    again = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep and again.template == prep.template
    assert again.box_frames == prep.box_frames
    old = Preprocessing.from_dict({"size": 48, "mean": 0.5, "std": 0.3, "equalize": False,
                                   "margin": 0.0})  # fmt: skip
    assert old.align == "template" and old.template == FER_TEMPLATE
    similar = Preprocessing(align="similarity")
    assert Preprocessing.from_dict(json.loads(json.dumps(similar.to_dict()))) == similar
    with pytest.raises(ConfigError, match="unknown align mode 'wide'"):
        Preprocessing(align="wide")


class _KnownDetector:
    """Finds every face at a known place: the box a fixed part of the frame, the landmarks
    at given fractions of it (what a real detector is measured for)."""

    name = "known"

    def __init__(self, landmarks) -> None:
        self.landmarks = np.asarray(landmarks)

    def detect(self, image, face_sizes=None):
        # the canvas is the face (upscaled to `big`) set in a border of `border` pixels
        border = image.shape[0] // 4  # measure_framing's pad 0.5: canvas = 2 × big
        big = image.shape[0] - 2 * border
        box = (border + big * 0.1, border + big * 0.2, big * 0.8, big * 0.8)
        marks = tuple(map(tuple, self.landmarks * big + border))
        return [Detection(tuple(int(round(v)) for v in box), 1.0, marks)]


def test_measuring_the_framing_recovers_a_known_template_and_box_frame():
    rng = np.random.default_rng(0)
    truth = np.array([[0.32, 0.4], [0.72, 0.38], [0.5, 0.6], [0.36, 0.78], [0.64, 0.8]])
    framing = measure_framing(rng.integers(0, 255, (6, 48, 48), dtype=np.uint8),
                              _KnownDetector(truth))  # fmt: skip
    assert framing.found.all()
    symmetric = np.asarray(framing.template())
    assert np.allclose(symmetric[:, 0] + symmetric[[1, 0, 2, 4, 3], 0], 1.0, atol=1e-3)
    assert np.allclose(symmetric[:, 1], (truth[:, 1] + truth[[1, 0, 2, 4, 3], 1]) / 2, atol=2e-3)
    dx, dy, side = framing.box_frame()
    # the box spans 0.1..0.9 × 0.2..1.0 of the frame: the frame centre sits 0.1 frame
    # sides above the box centre, and the frame is 1/0.8 box sides wide
    assert dx == 0.0 and dy == pytest.approx(-0.1 / 0.8, abs=0.01)
    assert side == pytest.approx(1 / 0.8, abs=0.01)
    assert framing.summary()["found"] == 6


def _texture(rng) -> np.ndarray:
    """A 48×48 face-sized texture with detail down to a couple of pixels."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (48, 48)).astype(np.float32), (0, 0), 1.0)
    return np.clip(128 + noise / noise.std() * 50, 0, 255).astype(np.uint8)


def test_a_large_face_is_sampled_finely_then_averaged_and_a_small_one_directly():
    """Cut back out of an image where it is rolled and twice its size, a face comes back
    closer to the original when the frame is sampled on a finer grid and area-averaged
    than when sampled straight into 48×48; at its own size the finer grid is not used."""
    rng = np.random.default_rng(0)
    errors: dict = {"fine": [], "direct": []}
    for _ in range(12):
        face = _texture(rng)
        frame, m = place(face, rng.uniform(-25, 25), 2.0, (250 + rng.uniform(), 170.5))
        back = cv2.invertAffineTransform(m)
        for name, oversample in (("fine", None), ("direct", 1)):
            crop = warp_face(frame, back, 48, oversample)
            errors[name].append(np.abs(crop.astype(int) - face)[5:-5, 5:-5].mean())
    assert np.mean(errors["fine"]) < 0.97 * np.mean(errors["direct"])
    same, m = place(_texture(rng), 12.0, 1.0, (200, 150))
    back = cv2.invertAffineTransform(m)
    assert np.array_equal(warp_face(same, back, 48), warp_face(same, back, 48, 1))
