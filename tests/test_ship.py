"""ship_model(): safetensors weights plus a card whose numbers are measured, not copied, by
evaluate's own code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ferkit.data import open_store, write_store
from ferkit.files import sha256_file
from ferkit.models.checkpoint import load_model, save_checkpoint
from ferkit.models.registry import create_model
from ferkit.ship import ship_model

from conftest import synthetic_faces

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ship_writes_weights_and_an_honest_card(tmp_path):
    n = 140
    images = synthetic_faces(n, 3)
    labels = np.arange(n) % 7
    store = write_store(tmp_path / "s.h5", images, labels, np.array([0, 1, 2, 1] * (n // 4)))
    torch.manual_seed(0)
    model = create_model("mini_xception")
    with open_store(store) as opened:
        prep = opened.preprocessing()
        test_faces, test_labels = opened.split_arrays("test")
    checkpoint = save_checkpoint(
        tmp_path / "run" / "best.pt", model, arch="mini_xception", arch_kwargs={},
        preprocessing=prep, epoch=3, metrics={"val_acc": 0.2},
    )  # fmt: skip
    weights, card_file = ship_model(
        tmp_path / "run", "tiny", data=store, command="ferkit train ...", dest=tmp_path / "w"
    )
    assert torch.get_num_threads() == 1  # its speed measurement left the thread count as it was
    card = json.loads(card_file.read_text())
    assert card["sha256"] == sha256_file(weights)
    assert card["architecture"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["training"]["command"] == "ferkit train ..."
    assert set(card["results"]["by_tta"]) == {"none", "flip"}
    assert card["results"]["temperature"] > 0

    shipped = load_model(weights)
    assert shipped.ferkit.metrics["temperature"] == card["results"]["temperature"]
    with torch.no_grad():
        logits = shipped(torch.from_numpy(test_faces).float().unsqueeze(1) / 255)
    original = load_model(checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(
            logits, original(torch.from_numpy(test_faces).float().unsqueeze(1) / 255)
        )
    mode = card["results"]["tta_chosen_on_val"]
    from ferkit.evaluate.tta import predict_tta
    from ferkit.infer.backends import TorchClassifier

    probs = predict_tta(TorchClassifier(original), test_faces, mode)
    measured = float((probs.argmax(1) == test_labels).mean())
    assert card["results"]["test_accuracy"] == measured
    # the same numbers as `ferkit evaluate` of the shipped weights with that TTA
    from ferkit.evaluate import evaluate

    report = evaluate([weights], data=store, tta=mode, out=tmp_path / "eval").report
    evaluated = report["members"][0]
    assert evaluated["metrics"]["accuracy"] == card["results"]["test_accuracy"]
    calibration = evaluated["calibration"]
    assert calibration["temperature"] == pytest.approx(card["results"]["temperature"], abs=1e-6)
    assert calibration["ece_after"] == pytest.approx(card["results"]["test_ece_after"], abs=1e-6)

    # The shipped weights carry that choice, and every backend applies it by default.
    assert shipped.ferkit.metrics["tta"] == mode
    used = TorchClassifier(shipped, calibrated=False).predict_proba(test_faces)
    np.testing.assert_allclose(used, probs, atol=1e-5)
    assert card["results"]["tta_applied_by_default"] == mode


def test_ship_opens_the_store_once_for_the_test_split_and_its_provenance(tmp_path, monkeypatch):
    import ferkit.data.store
    from ferkit.labels import EMOTIONS
    from ferkit.ship import _splits

    splits = np.array([0, 0, 1, 2] * 7)
    store = write_store(tmp_path / "s.h5", synthetic_faces(28, 5), np.arange(28) % 7, splits)
    opened = []
    real = ferkit.data.store.open_store
    monkeypatch.setattr(ferkit.data.store, "open_store", lambda p: opened.append(p) or real(p))
    test, info = _splits(store, "fer2013", EMOTIONS, "run")
    assert len(opened) == 1
    assert info["train_images"] == 14 and len(test.labels) == 7
