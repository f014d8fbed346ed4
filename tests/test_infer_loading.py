"""`open_classifier` / `choose_model`: one decision of which model runs on which backend,
shared by predict, serve, demo, evaluate and export."""

from __future__ import annotations

import pytest

import ferkit.models.checkpoint as checkpoint_module
from ferkit.errors import ModelError
from ferkit.infer.backends import OnnxClassifier, TorchClassifier
from ferkit.infer.loading import backend_name, choose_model, open_classifier
from ferkit.models.checkpoint import shipped_models

from conftest import save_tiny_checkpoint


def _served_backend(monkeypatch, *args) -> tuple[str, str]:
    pytest.importorskip("fastapi")
    from typer.testing import CliRunner

    import ferkit.serve.app as serve_app
    from ferkit.cli import app

    calls = []
    monkeypatch.setattr(serve_app, "run", lambda served, **kw: calls.append(served))
    monkeypatch.setattr("ferkit.infer.recognizer.set_threads", lambda n: None)
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    engine = calls[0].state.engine
    return engine.describe()["backend"], engine.choice.description


@pytest.mark.skipif("default" not in shipped_models(), reason="no shipped default model")
def test_serve_and_serve_model_default_run_the_same_backend(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    chosen, description = _served_backend(monkeypatch)
    named, _ = _served_backend(monkeypatch, "--model", "default")
    assert "shipped 'default'" in description
    assert chosen == named == backend_name(open_classifier("default")) == "onnx"


def test_a_checkpoint_is_served_predicted_and_chosen_on_one_backend(tmp_path, monkeypatch):
    path = save_tiny_checkpoint(tmp_path / "best.pt")
    from ferkit.infer.recognizer import Recognizer

    served, _ = _served_backend(monkeypatch, "--model", str(path))
    assert served == "torch"  # no export beside it
    assert isinstance(Recognizer(path, detector="none").classifier, TorchClassifier)
    assert isinstance(choose_model(str(path)).classifier, TorchClassifier)
    with pytest.raises(ModelError, match="no ONNX export"):
        open_classifier(path, backend="onnx")


def test_the_demo_opens_its_model_once(tmp_path, monkeypatch):
    import ferkit.infer.demo as demo
    import ferkit.infer.writers as writers

    path = save_tiny_checkpoint(tmp_path / "run" / "best.pt")
    loads = []
    real = checkpoint_module.load_checkpoint
    monkeypatch.setattr(checkpoint_module, "load_checkpoint", lambda p: loads.append(p) or real(p))
    monkeypatch.setattr(demo, "make_clip", lambda target: target)
    monkeypatch.setattr(writers, "record", lambda recognizer, *a, **kw: recognizer)
    choice, photo_recognizer, _ = demo.run_demo(tmp_path / "out", model=str(path))
    assert choice.description == f"{path} (chosen explicitly)"
    assert photo_recognizer.classifier is choice.classifier
    assert loads == [path]


def test_the_fallback_without_any_model_is_an_announced_untrained_network(tmp_path, monkeypatch):
    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    monkeypatch.setattr(checkpoint_module, "shipped_models", lambda: [])
    monkeypatch.setattr(checkpoint_module, "shipped_aliases", lambda: {})
    monkeypatch.chdir(tmp_path)
    classifier = open_classifier(None)
    assert isinstance(classifier, TorchClassifier) and not isinstance(classifier, OnnxClassifier)
    assert classifier.class_names == choose_model(None).classifier.class_names
    assert not choose_model(None).trained


def test_unknown_backends_and_objects_are_refused(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "m.pt")
    with pytest.raises(ModelError, match="unknown backend 'tensorrt'"):
        open_classifier(path, backend="tensorrt")
    with pytest.raises(ModelError, match="cannot use object as an emotion classifier"):
        open_classifier(object())
