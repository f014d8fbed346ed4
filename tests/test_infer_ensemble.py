"""Ensembles as one classifier: a file or shipped name usable wherever a model is."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferkit.models.checkpoint as checkpoint_module
from ferkit.errors import ModelError
from ferkit.infer.backends import EnsembleClassifier
from ferkit.infer.loading import open_classifier
from ferkit.infer.recognizer import Recognizer
from ferkit.models.checkpoint import load_model
from ferkit.preprocess import Preprocessing
from ferkit.ship import ship_ensemble, ship_model
from synthetic_train import learnable_store, stripes

from conftest import save_tiny_checkpoint


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return learnable_store(tmp_path_factory.mktemp("data") / "s.h5", per_class=(4, 6, 6))


def tiny(path, seed: int, classes=7, **prep):
    """A tiny checkpoint whose preprocessing (and, for classes != 7, class names) differ."""
    names = tuple(f"c{i}" for i in range(classes)) if classes != 7 else None
    extra = {"class_names": names} if names else {}
    prep = Preprocessing(mean=0.4 + seed / 10, std=0.3, **prep)
    return save_tiny_checkpoint(path, seed=seed, num_classes=classes, preprocessing=prep, **extra)


def test_an_ensemble_file_averages_its_members(tmp_path):
    a, b = tiny(tmp_path / "a.pt", 1), tiny(tmp_path / "b.pt", 2)
    spec = tmp_path / "pair.ensemble.json"
    spec.write_text(json.dumps({"format": "ferkit-ensemble", "members": ["a.pt", "b.pt"]}))
    faces = stripes(np.arange(7), seed=3)
    ensemble = open_classifier(spec)
    assert isinstance(ensemble, EnsembleClassifier) and len(ensemble.members) == 2
    expected = sum(open_classifier(p).predict_proba(faces) for p in (a, b)) / 2
    np.testing.assert_allclose(ensemble.predict_proba(faces), expected, atol=1e-6)

    spec.write_text(json.dumps({"format": "ferkit-ensemble", "members": ["a.pt", "b.pt"],
                                "temperature": 3.0}))  # fmt: skip
    softer = open_classifier(spec).predict_proba(faces)
    assert softer.max(1).mean() < expected.max(1).mean()
    np.testing.assert_array_equal(softer.argmax(1), expected.argmax(1))
    faces_found = Recognizer(spec, detector="none").predict(faces[0])
    assert len(faces_found) == 1 and abs(sum(faces_found[0].probs.values()) - 1) < 1e-5


def test_members_must_agree_on_classes_and_crop(tmp_path):
    a = tiny(tmp_path / "a.pt", 1)
    other_classes = tiny(tmp_path / "b.pt", 2, classes=8)
    other_crop = tiny(tmp_path / "c.pt", 3, margin=0.3)
    for odd, what in ((other_classes, "classes"), (other_crop, "crop")):
        members = [open_classifier(a), open_classifier(odd)]
        with pytest.raises(ModelError, match=what):
            EnsembleClassifier(members)
    broken = tmp_path / "broken.ensemble.json"
    broken.write_text('{"members": []}')
    with pytest.raises(ModelError, match="broken.ensemble.json"):
        open_classifier(broken)


def test_shipped_ensemble_has_a_card_and_a_name(store, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    monkeypatch.setattr(checkpoint_module, "weights_dir", lambda: weights)
    for seed, name in ((1, "one"), (2, "two")):
        tiny(tmp_path / name / "best.pt", seed)
        ship_model(tmp_path / name, name, data=store, command="train", dest=weights)
    with pytest.raises(ModelError, match="not shipped"):
        ship_ensemble(["one", "nope"], "pair", data=store)
    spec, card_path = ship_ensemble(["one", "two"], "pair", data=store)
    card = json.loads(card_path.read_text())
    assert card["members"] == ["one", "two"] and set(card["results"]["by_member"]) == {
        "one", "two"}  # fmt: skip
    assert "pair" in checkpoint_module.shipped_models()
    classifier = open_classifier("pair")
    assert classifier.temperature == pytest.approx(card["results"]["temperature"])
    with pytest.raises(ModelError, match="ensemble"):
        load_model("pair")


def test_an_int8_ensemble_runs_its_members_int8_exports(store, tmp_path, monkeypatch):
    from ferkit.export import export_onnx
    from ferkit.infer.backends import OnnxClassifier

    weights = tmp_path / "weights"
    monkeypatch.setattr(checkpoint_module, "weights_dir", lambda: weights)
    for seed, name in ((1, "one"), (2, "two")):
        tiny(tmp_path / name / "best.pt", seed)
        ship_model(tmp_path / name, name, data=store, command="train", dest=weights)
    export_onnx("one", int8="static", data=store, check_samples=32)
    with pytest.raises(ModelError, match="ferkit export two --int8"):
        ship_ensemble(["one", "two"], "pair", data=store, int8=True)
    export_onnx("two", int8="static", data=store, check_samples=32)

    spec, card_path = ship_ensemble(["one", "two"], "pair", data=store, int8=True)
    card = json.loads(card_path.read_text())
    files = ["one.int8.onnx", "two.int8.onnx"]
    assert json.loads(spec.read_text())["members"] == files == card["member_files"]
    assert card["members"] == ["one", "two"]
    ensemble = open_classifier("pair", calibrated=False)
    assert all(isinstance(m, OnnxClassifier) for m in ensemble.members)
    faces = stripes(np.arange(7), seed=5)
    int8 = [open_classifier(weights / f"{n}.int8.onnx", calibrated=False) for n in ("one", "two")]
    expected = sum(m.predict_proba(faces) for m in int8) / 2
    np.testing.assert_allclose(ensemble.predict_proba(faces), expected, atol=1e-6)
