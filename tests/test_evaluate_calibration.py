"""Temperature scaling: lowers NLL of an over-confident model, keeps predictions, is stored
in the checkpoint (keeping everything else of it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.evaluate.calibration import (
    apply_temperature,
    checkpoint_temperature,
    expected_calibration_error,
    fit_temperature,
    store_temperature,
)
from ferkit.models.checkpoint import load_checkpoint, save_checkpoint
from ferkit.models.registry import create_model
from ferkit.preprocess import Preprocessing


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, sharpen: float, seed: int):
    """Labels drawn from softmax(z); the "model" reports softmax(sharpen · z)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, 7))
    truth = _softmax(logits)
    labels = np.array([rng.choice(7, p=p) for p in truth])
    return _softmax(sharpen * logits), labels


def _nll(probs, labels):
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def test_temperature_scaling_lowers_nll_of_an_overconfident_model():
    val_probs, val_labels = overconfident(3000, sharpen=3.0, seed=0)
    test_probs, test_labels = overconfident(3000, sharpen=3.0, seed=1)
    temperature = fit_temperature(val_probs, val_labels)
    assert temperature == pytest.approx(3.0, rel=0.15)  # recovers the sharpening
    calibrated = apply_temperature(test_probs, temperature)
    assert _nll(calibrated, test_labels) < _nll(test_probs, test_labels) - 0.1
    assert expected_calibration_error(calibrated, test_labels) < expected_calibration_error(
        test_probs, test_labels
    )
    np.testing.assert_array_equal(calibrated.argmax(1), test_probs.argmax(1))


def test_temperature_one_is_the_identity_and_bad_values_fail():
    probs, _ = overconfident(10, 1.0, seed=2)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(probs, 0.0)
    with pytest.raises(ValueError, match="zero examples"):
        fit_temperature(probs[:0], np.zeros(0, int))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_temperature_is_stored_in_the_checkpoint(tmp_path, suffix):
    torch.manual_seed(0)
    model = create_model("mini_xception").eval()
    path = tmp_path / f"best{suffix}"
    train_state = {"history": [{"epoch": 1}]} if suffix == ".pt" else None
    save_checkpoint(
        path, model, arch="mini_xception", arch_kwargs={}, preprocessing=Preprocessing(),
        config={"seed": 3}, epoch=4, metrics={"val_acc": 0.5}, train_state=train_state,
    )  # fmt: skip
    assert checkpoint_temperature(load_checkpoint(path).metrics) is None
    store_temperature(path, 1.7, {"split": "val"})
    loaded = load_checkpoint(path)
    assert checkpoint_temperature(loaded.metrics) == pytest.approx(1.7)
    assert loaded.metrics["val_acc"] == 0.5 and loaded.metrics["temperature_fitted_on"]["split"]
    assert loaded.epoch == 4 and loaded.config == {"seed": 3}
    assert loaded.train_state == train_state
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict[key], value)
