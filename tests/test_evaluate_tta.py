"""Test-time augmentation: views per mode, and TTA on a flip-invariant model equals none."""

from __future__ import annotations

import numpy as np
import pytest

from ferkit.errors import ConfigError
from ferkit.evaluate.tta import TTA_MODES, five_crops, predict_tta, tta_views, view_count
from ferkit.labels import EMOTIONS
from ferkit.preprocess import Preprocessing


class RowMeanClassifier:
    """A Classifier whose scores depend only on each row's mean: mirror images (left-right
    flips) get exactly the same probabilities. Records every batch it is given."""

    class_names = EMOTIONS
    preprocessing = Preprocessing()

    def __init__(self, seed: int = 0):
        self.weights = np.random.default_rng(seed).normal(size=(48, len(EMOTIONS)))
        self.batches: list[int] = []

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        self.batches.append(len(faces))
        logits = (faces.astype(np.float64).mean(axis=2) / 64.0) @ self.weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def test_view_counts_shapes_and_dtype(faces):
    batch = faces(5)
    for mode in TTA_MODES:
        views = tta_views(batch, mode)
        assert len(views) == view_count(mode)
        assert all(v.shape == batch.shape and v.dtype == np.uint8 for v in views)


def test_flip_view_is_the_mirror_image(faces):
    batch = faces(3)
    original, mirror = tta_views(batch, "flip")
    np.testing.assert_array_equal(original, batch)
    np.testing.assert_array_equal(mirror, batch[:, :, ::-1])


def test_five_crops_take_corners_and_centre():
    ramp = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))[
        None
    ]  # brightness grows to the right
    left, right, _, _, centre = five_crops(ramp, 0.5)
    assert left.mean() < centre.mean() < right.mean()
    constant = np.full((2, 48, 48), 77, np.uint8)
    assert all((crop == 77).all() for crop in five_crops(constant))


def test_tta_on_a_flip_invariant_model_equals_no_tta(faces):
    batch = faces(20, seed=3)
    classifier = RowMeanClassifier()
    plain = predict_tta(classifier, batch, "none")
    np.testing.assert_allclose(predict_tta(classifier, batch, "flip"), plain, rtol=1e-6)
    # ten crops differ from the plain view but keep probabilities normalised
    ten = predict_tta(classifier, batch, "tencrop")
    assert ten.shape == plain.shape
    np.testing.assert_allclose(ten.sum(axis=1), 1.0, rtol=1e-5)


def test_all_views_go_through_the_classifier_in_one_batch(faces):
    classifier = RowMeanClassifier()
    predict_tta(classifier, faces(4), "flip+tencrop")
    assert classifier.batches == [4 * 12]


def test_empty_input_and_unknown_mode(faces):
    classifier = RowMeanClassifier()
    assert predict_tta(classifier, np.zeros((0, 48, 48), np.uint8), "flip").shape == (0, 7)
    with pytest.raises(ConfigError, match="unknown TTA mode 'mirror'"):
        predict_tta(classifier, faces(1), "mirror")
    with pytest.raises(ConfigError, match="crop fraction"):
        five_crops(faces(1), 1.5)


def test_flip_is_written_once_for_numpy_faces_and_torch_batches(faces):
    import torch

    from ferkit.models.temperature import flip_average, mirror

    crops = faces(3)
    np.testing.assert_array_equal(tta_views(crops, "flip")[1], mirror(crops))
    np.testing.assert_array_equal(mirror(torch.from_numpy(crops)).numpy(), mirror(crops))
    weights = np.linspace(0.0, 1.0, 48 * 48, dtype=np.float32).reshape(48, 48)

    def score(batch):  # a left-right asymmetric "model": mirroring changes its output
        batch = batch if isinstance(batch, np.ndarray) else batch.numpy()
        return (batch.astype(np.float32) * weights).sum(axis=(1, 2))[:, None]

    expected = (score(crops) + score(crops[:, :, ::-1].copy())) / 2
    assert not np.allclose(score(crops), expected)
    np.testing.assert_allclose(flip_average(score, crops), expected, rtol=1e-6)
    by_torch = flip_average(lambda b: torch.from_numpy(score(b)), torch.from_numpy(crops))
    np.testing.assert_allclose(by_torch.numpy(), expected, rtol=1e-6)
