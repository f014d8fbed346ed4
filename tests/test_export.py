"""ONNX export: round trip with parity and metadata, int8 (static and dynamic), the ONNX
Runtime classifier behind the `Classifier` protocol and the Recognizer, bad input, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from ferkit.data.store import open_store
from ferkit.errors import ConfigError, ModelError
from ferkit.export import default_output, export_onnx, read_metadata
from ferkit.files import sha256_file
from ferkit.infer.backends import (
    Classifier,
    OnnxClassifier,
    TorchClassifier,
)
from ferkit.infer.loading import matching_export, network_backend, open_classifier
from ferkit.infer.recognizer import Recognizer
from ferkit.labels import EMOTIONS
from ferkit.models.checkpoint import Checkpoint, load_model, save_checkpoint
from ferkit.models.registry import create_model
from ferkit.preprocess import normalize
from synthetic_train import learnable_store, stripes

from conftest import save_tiny_checkpoint


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Learnable stripes: 30 train and 12 test faces per class."""
    return learnable_store(tmp_path_factory.mktemp("store") / "s.h5", per_class=(30, 2, 12))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, store):
    """An untrained mini-Xception saved as a checkpoint with the store's statistics."""
    with open_store(store) as opened:
        prep = opened.preprocessing()
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "best.pt", preprocessing=prep)


@pytest.fixture(scope="module")
def exported(checkpoint, store):
    """The checkpoint exported to its default place (best.onnx beside best.pt)."""
    return export_onnx(checkpoint, data=store, check_samples=None)


@pytest.fixture(scope="module")
def trained(store):
    """A small CNN (with batch norm, folded at quantisation) trained briefly on the stripes,
    so its predictions are confident and int8 agreement means something."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 7),
    )  # fmt: skip
    with open_store(store) as opened:
        prep = opened.preprocessing()
        images, labels = opened.split_arrays("train")
    x, y = normalize(torch.from_numpy(images), prep), torch.from_numpy(labels).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        index = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(net(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    net.ferkit = Checkpoint(arch="tiny_cnn", class_names=EMOTIONS, preprocessing=prep)
    return net


def test_round_trip_matches_pytorch_and_carries_metadata(checkpoint, exported):
    assert exported.path == checkpoint.with_suffix(".onnx") == default_output(checkpoint, False)
    assert exported.quantization == "none"
    assert exported.check_count == 84 and "test split" in exported.check_inputs
    assert exported.max_abs_diff <= 1e-4 and exported.agreement == 1.0
    assert exported.accuracy_onnx == exported.accuracy_torch
    onnx.checker.check_model(str(exported.path), full_check=True)

    meta = read_metadata(exported.path)
    model = load_model(checkpoint)
    assert meta["class_names"] == list(EMOTIONS)
    assert meta["input_size"] == [48, 48] and meta["input_dtype"] == "uint8"
    assert meta["preprocessing"] == model.ferkit.preprocessing.to_dict()
    assert meta["source_sha256"] == sha256_file(checkpoint) == exported.source_sha256
    assert meta["arch"] == "mini_xception" and meta["parity"]["max_abs_diff"] <= 1e-4

    # The batch axis is dynamic: 1, 7 and 300 faces (the last in two chunks of 256).
    faces = stripes(np.arange(300) % 7, seed=5)
    torch_clf, onnx_clf = TorchClassifier(model), OnnxClassifier(exported.path, threads=1)
    for n in (1, 7, 300):
        np.testing.assert_allclose(
            onnx_clf.predict_proba(faces[:n]), torch_clf.predict_proba(faces[:n]), atol=1e-5
        )
    assert onnx_clf.predict_proba(faces[:0]).shape == (0, 7)


def test_onnx_backend_gives_the_same_faces_as_torch(checkpoint, exported):
    onnx_clf = open_classifier(exported.path)
    assert isinstance(onnx_clf, OnnxClassifier) and isinstance(onnx_clf, Classifier)
    assert onnx_clf.class_names == EMOTIONS
    assert onnx_clf.preprocessing == load_model(checkpoint).ferkit.preprocessing
    # backend="onnx" finds the export beside the checkpoint.
    assert isinstance(open_classifier(checkpoint, backend="onnx"), OnnxClassifier)
    assert isinstance(open_classifier(checkpoint, backend="torch"), TorchClassifier)

    images = list(stripes(np.array([0, 3, 6]), seed=9))
    images.append(np.kron(images[0], np.ones((3, 3), dtype=np.uint8)))  # 144×144: resized
    by_torch = Recognizer(checkpoint, detector="none", backend="torch").predict_batch(images)
    by_onnx = Recognizer(exported.path, detector="none").predict_batch(images)
    for torch_faces, onnx_faces in zip(by_torch, by_onnx, strict=True):
        (a,), (b,) = torch_faces, onnx_faces
        assert (a.box, a.label) == (b.box, b.label)
        assert a.probs.keys() == b.probs.keys()
        np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


def test_recognizer_runs_the_matching_export_on_the_cpu_by_default(checkpoint, exported, tmp_path):
    import shutil

    assert isinstance(Recognizer(checkpoint, detector="none").classifier, OnnxClassifier)
    # "auto" means that everywhere; evaluation asks for the network itself.
    assert isinstance(open_classifier(checkpoint), OnnxClassifier)
    assert network_backend(checkpoint) == "torch" and network_backend(exported.path) == "onnx"
    assert isinstance(open_classifier(checkpoint, backend="torch"), TorchClassifier)
    # An export left from before the checkpoint changed is not used.
    stale = shutil.copy(checkpoint, tmp_path / "best.pt")
    shutil.copy(exported.path, tmp_path / "best.onnx")
    with open(stale, "ab") as handle:
        handle.write(b"\0")  # different bytes, different sha256
    assert matching_export(stale) is None
    assert isinstance(Recognizer(checkpoint, detector="none", backend="torch").classifier,
                      TorchClassifier)  # fmt: skip


def test_set_threads_reaches_the_onnx_sessions_opened_after_it(exported, one_thread, monkeypatch):
    import ferkit.infer.backends as backends
    from ferkit.infer.recognizer import set_threads

    def threads_of(classifier: OnnxClassifier) -> int:
        return classifier.session.get_session_options().intra_op_num_threads

    monkeypatch.setattr(backends, "_onnx_threads", None)  # restored after the test
    assert threads_of(OnnxClassifier(exported.path)) == 0  # 0: ONNX Runtime's own default
    set_threads(1)  # as `predict --threads 1` and each batch worker do
    assert threads_of(OnnxClassifier(exported.path)) == 1
    assert threads_of(OnnxClassifier(exported.path, threads=2)) == 2  # an explicit choice wins


def test_both_backends_apply_the_stored_temperature(checkpoint, store, tmp_path):
    import shutil

    from ferkit.evaluate.calibration import apply_temperature, store_temperature

    path = shutil.copy(checkpoint, tmp_path / "best.pt")
    store_temperature(path, 2.5, {"split": "val"})
    onnx_path = export_onnx(path, data=store, check_samples=None).path
    faces = np.stack(list(stripes(np.arange(7), seed=4)))

    raw = TorchClassifier(load_model(path), calibrated=False).predict_proba(faces)
    expected = apply_temperature(raw, 2.5)
    assert not np.allclose(raw, expected, atol=1e-3)  # T = 2.5 visibly softens them
    for backend in ("torch", "onnx"):
        calibrated = open_classifier(path, backend=backend).predict_proba(faces)
        np.testing.assert_allclose(calibrated, expected, atol=1e-5)
        uncalibrated = open_classifier(path, backend=backend, calibrated=False)
        np.testing.assert_allclose(uncalibrated.predict_proba(faces), raw, atol=1e-5)
    assert OnnxClassifier(onnx_path).temperature == pytest.approx(2.5)


def test_both_backends_apply_the_stored_flip_tta(checkpoint, store, tmp_path):
    from ferkit.models.checkpoint import load_checkpoint

    stored = load_checkpoint(checkpoint)
    path = save_checkpoint(
        tmp_path / "flip.pt", load_model(checkpoint), arch=stored.arch,
        arch_kwargs=stored.arch_kwargs, preprocessing=stored.preprocessing,
        class_names=stored.class_names, metrics={"tta": "flip"},
    )  # fmt: skip
    export_onnx(path, data=store, check_samples=None)
    faces = np.stack(list(stripes(np.arange(7), seed=4)))
    faces[:, :, :20] = 0  # asymmetric faces: the mirror image gets other probabilities
    raw = TorchClassifier(load_model(path), tta=False)
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    expected = (raw.predict_proba(faces) + raw.predict_proba(mirrored)) / 2
    assert not np.allclose(raw.predict_proba(faces), expected, atol=1e-4)
    for backend in ("torch", "onnx"):
        np.testing.assert_allclose(
            open_classifier(path, backend=backend).predict_proba(faces), expected, atol=1e-5
        )
        untouched = open_classifier(path, backend=backend, tta=False).predict_proba(faces)
        np.testing.assert_allclose(untouched, raw.predict_proba(faces), atol=1e-5)


def test_int8_static_is_valid_and_agrees_with_fp32(trained, store, tmp_path):
    report = export_onnx(trained, tmp_path / "m.int8.onnx", int8=True, data=store)
    assert report.quantization == "static" and report.calibration == "210 training faces"
    model = onnx.load(str(report.path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Softmax"} <= ops
    assert read_metadata(report.path)["quantization"] == "static"

    # On faces it never saw (calibration used the train split, the check the test split).
    faces = stripes(np.arange(140) % 7, seed=11)
    expected = TorchClassifier(trained).predict_proba(faces)
    got = OnnxClassifier(report.path).predict_proba(faces)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)  # the softmax stayed float
    assert report.agreement >= 0.9
    assert abs(report.accuracy_onnx - report.accuracy_torch) <= 0.1


def test_int8_falls_back_to_dynamic_without_training_images(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/fer2013.h5 to find here
    report = export_onnx(trained, "m.onnx", int8=True, check_samples=64)
    assert report.quantization == "dynamic" and report.calibration is None
    assert report.check_inputs.startswith("random pixels") and report.check_count == 64
    assert report.accuracy_torch is None
    assert read_metadata(tmp_path / "m.onnx")["quantization"] == "dynamic"
    with pytest.raises(ConfigError, match="static int8 quantisation needs training images"):
        export_onnx(trained, "s.onnx", int8="static")


def test_failed_parity_raises_and_writes_nothing(trained, store, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(ModelError, match=r"differs from PyTorch by .* not written"):
        export_onnx(trained, out, data=store, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_bad_files_raise_clear_errors(tmp_path, trained, store):
    with pytest.raises(ModelError, match="ONNX model not found"):
        OnnxClassifier(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="garbage.onnx: ONNX Runtime cannot load it"):
        open_classifier(garbage)

    valid = export_onnx(trained, tmp_path / "valid.onnx", data=store, check_samples=8).path
    with pytest.raises(ValueError, match=r"expected faces of shape \(N, 48, 48\)"):
        OnnxClassifier(valid).predict_proba(np.zeros((2, 64, 64), np.uint8))
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(valid))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(ModelError, match="foreign.onnx: not a ferkit ONNX export"):
        OnnxClassifier(foreign)
    with pytest.raises(ModelError, match="not a ferkit ONNX export"):
        read_metadata(foreign)

    with pytest.raises(ModelError, match="unknown backend 'tensorrt'"):
        open_classifier(valid, backend="tensorrt")
    with pytest.raises(ModelError, match="runs with the onnx backend, not torch"):
        open_classifier(valid, backend="torch")
    bare = save_checkpoint(
        tmp_path / "bare.pt", create_model("mini_xception"), arch="mini_xception",
        arch_kwargs={}, preprocessing=trained.ferkit.preprocessing,
    )  # fmt: skip
    with pytest.raises(ModelError, match=r"no ONNX export of .*bare.pt at .*bare.onnx"):
        open_classifier(bare, backend="onnx")


def ferkit(*args):
    return subprocess.run(
        [sys.executable, "-m", "ferkit", *map(str, args)], capture_output=True, text=True
    )


def test_cli_export(checkpoint, store, tmp_path):
    out = tmp_path / "cli.onnx"
    done = ferkit("export", checkpoint, "--out", out, "--data", store, "--check-samples", "20")
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "max |Δp|" in done.stdout
    assert read_metadata(out)["source_checkpoint"] == "best.pt"
    failed = ferkit("export", checkpoint, "--format", "tflite")
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "ferkit: error: unknown export format 'tflite'; only onnx is supported"
    )


def test_float16_weights_export_as_float16_and_compute_the_same(tmp_path):
    torch.manual_seed(0)
    model = create_model("vgg", width=0.25, fc=64)
    prep = {"size": 48, "mean": 0.5, "std": 0.25}
    full = save_checkpoint(tmp_path / "full.safetensors", model, arch="vgg",
                           arch_kwargs={"width": 0.25, "fc": 64}, preprocessing=prep)  # fmt: skip
    half = save_checkpoint(tmp_path / "half.safetensors", model, arch="vgg",
                           arch_kwargs={"width": 0.25, "fc": 64}, preprocessing=prep,
                           half=True)  # fmt: skip
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    for name, value in model.state_dict().items():  # float16 values, float32 tensors
        got = loaded.state_dict()[name]
        assert got.dtype == value.dtype
        torch.testing.assert_close(got, value.half().to(value.dtype) if got.numel() >= 4096
                                   and value.is_floating_point() else value)  # fmt: skip
    big = export_onnx(full, tmp_path / "full.onnx", check_samples=None).path
    small = export_onnx(half, tmp_path / "half.onnx", check_samples=None)
    assert small.path.stat().st_size < 0.6 * big.stat().st_size
    assert small.max_abs_diff < 1e-5  # parity with PyTorch on the same weights
    onnx.checker.check_model(onnx.load(str(small.path)), full_check=True)
