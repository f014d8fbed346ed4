"""Labelled folders: synonyms, class maps, any image size, unreadable files, unknown classes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit.errors import DataError
from ferkit.evaluate.folder import load_labelled_folder, map_class_folders
from ferkit.infer.recognizer import Recognizer
from ferkit.labels import EMOTIONS
from ferkit.preprocess import Preprocessing


class _Uniform:
    """A classifier stub: folder loading only needs the pipeline's detection and crops."""

    class_names = EMOTIONS
    preprocessing = Preprocessing()

    def predict_proba(self, faces):
        return np.full((len(faces), len(EMOTIONS)), 1 / len(EMOTIONS), np.float32)


def pipeline(detector: str) -> Recognizer:
    return Recognizer(_Uniform(), detector=detector, tracking=False)


@pytest.fixture
def folder(tmp_path, faces):
    """anger/ (2 gray 48×48 PNGs), Happiness/ (1 colour 100×80 JPEG + a corrupt .jpg),
    sadness/nested/ (1 image) and a stray text file; hidden files are ignored."""
    root = tmp_path / "labelled"
    images = faces(4, seed=5)
    for name in ("anger", "Happiness", "sadness/nested"):
        (root / name).mkdir(parents=True)
    cv2.imwrite(str(root / "anger" / "a1.png"), images[0])
    cv2.imwrite(str(root / "anger" / "a2.png"), images[1])
    colour = cv2.cvtColor(cv2.resize(images[2], (100, 80)), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(root / "Happiness" / "h1.jpg"), colour)
    (root / "Happiness" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cv2.imwrite(str(root / "sadness" / "nested" / "s1.png"), images[3])
    (root / "sadness" / "notes.txt").write_text("not an image")
    (root / "anger" / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_synonyms_any_size_and_unreadable_files(folder):
    data = load_labelled_folder(folder, EMOTIONS, pipeline("none"))
    assert data.faces.shape == (4, 48, 48) and data.faces.dtype == np.uint8
    assert sorted(EMOTIONS[k] for k in data.labels) == ["angry", "angry", "happy", "sad"]
    assert data.folders == {"Happiness": "happy", "anger": "angry", "sadness": "sad"}
    failed = sorted(name for name, _ in data.failures)
    assert failed == ["Happiness/broken.jpg", "sadness/notes.txt"]
    assert all("cannot decode" in reason for _, reason in data.failures)
    described = data.describe()
    assert described["failures"]["count"] == 2 and described["n"] == 4
    assert described["detector"] == "none" and data.no_face == []


def test_images_without_a_detected_face_are_classified_whole_and_listed(folder):
    data = load_labelled_folder(folder, EMOTIONS, pipeline("haar"))
    # synthetic patterns hold no face: every image is used whole and named
    assert len(data.labels) == 4
    assert sorted(data.no_face) == sorted(data.paths)
    assert data.detector == "haar"
    assert data.face_counts().startswith("haar: a face in 0 of 4 images; no face in 4 (100%)")
    # the crops are the pipeline's: equalised by default, as `ferkit predict` crops them
    assert data.describe()["preprocessing"]["equalize"] is True


def test_folder_crops_are_the_recognizers_crops(folder):
    """evaluate --folder and predict cut the same pixels: same detector, alignment and
    equalisation, because the folder is read through the Recognizer itself."""
    from ferkit.infer.frames import read_image

    rec = pipeline("none")
    data = load_labelled_folder(folder, EMOTIONS, rec)
    image = read_image(folder / data.paths[0])
    assert np.array_equal(data.faces[0], rec.crop(image, rec.detect(image)[0]))


def test_unknown_class_folder_lists_the_expected_names(folder):
    (folder / "contempt").mkdir()
    with pytest.raises(DataError, match="unknown class folder.*'contempt'.*angry, disgust"):
        map_class_folders(folder, EMOTIONS)
    mapping = map_class_folders(folder, EMOTIONS, class_map={"contempt": "disgust"})
    assert mapping[folder / "contempt"] == EMOTIONS.index("disgust")


def test_a_folder_without_class_folders_or_images_fails_clearly(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        map_class_folders(tmp_path / "missing", EMOTIONS)
    with pytest.raises(DataError, match="no class subfolders"):
        map_class_folders(tmp_path, EMOTIONS)
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match="no readable images"):
        load_labelled_folder(tmp_path, EMOTIONS, pipeline("none"))
