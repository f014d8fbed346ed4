"""Checkpoints: .pt and .safetensors round trips, run folders, shipped names, wrapped models,
atomic writes and clear errors for corrupt or foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ferkit
from ferkit.errors import ModelError
from ferkit.models import checkpoint as ckpt_module
from ferkit.models.checkpoint import (
    Checkpoint,
    clean_state_dict,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from ferkit.models.registry import create_model
from ferkit.preprocess import Preprocessing

PREP = Preprocessing(mean=0.507, std=0.255, equalize=True, margin=0.1)


@pytest.fixture(scope="module")
def trained():
    """A small model whose BatchNorm statistics moved away from their initial values."""
    torch.manual_seed(0)
    model = create_model("mini_xception", act="elu")
    with torch.no_grad():
        model(torch.randn(8, 1, 48, 48) * 2 + 1)
    model.eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        return model, x, model(x)


def _save(path, model, **extra):
    return save_checkpoint(
        path,
        model,
        arch="mini_xception",
        arch_kwargs={"act": "elu"},
        preprocessing=PREP,
        config={"lr": 1e-3, "store": Path("data/fer2013.h5")},
        epoch=np.int64(12),
        metrics={"val_accuracy": np.float32(0.625), "val_loss": 1.1},
        **extra,
    )


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_pt_round_trip_keeps_outputs_metadata_and_train_state(tmp_path, trained):
    model, x, reference = trained
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    path = _save(tmp_path / "run" / "last.pt", model, train_state=train_state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left

    checkpoint = load_checkpoint(path)
    assert checkpoint.arch == "mini_xception" and checkpoint.arch_kwargs == {"act": "elu"}
    assert checkpoint.class_names == ferkit.EMOTIONS
    assert checkpoint.preprocessing == PREP
    assert checkpoint.config == {"lr": 1e-3, "store": "data/fer2013.h5"}
    assert checkpoint.epoch == 12
    assert checkpoint.metrics == {"val_accuracy": 0.625, "val_loss": 1.1}
    assert torch.equal(checkpoint.train_state["torch_rng"], train_state["torch_rng"])

    loaded = load_model(path)
    assert not loaded.training
    torch.testing.assert_close(_outputs(loaded, x), reference, rtol=0, atol=0)
    assert loaded.ferkit.preprocessing == PREP and loaded.ferkit.state_dict is None


def test_safetensors_round_trip_keeps_outputs_and_metadata(tmp_path, trained):
    model, x, reference = trained
    path = _save(tmp_path / "default.safetensors", model)
    loaded = ferkit.load_model(path)
    torch.testing.assert_close(_outputs(loaded, x), reference, rtol=0, atol=0)
    info = loaded.ferkit
    assert (info.arch, info.arch_kwargs, info.epoch) == ("mini_xception", {"act": "elu"}, 12)
    assert info.metrics["val_accuracy"] == 0.625 and info.preprocessing == PREP
    assert info.train_state is None
    # as readable as any file written here (save_file alone would make it owner-only)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    with pytest.raises(ModelError, match="no train_state"):
        _save(tmp_path / "x.safetensors", model, train_state={"step": 1})


def test_run_folder_and_shipped_names(tmp_path, trained, monkeypatch):
    model, x, reference = trained
    _save(tmp_path / "runs" / "exp1" / "best.pt", model)
    torch.testing.assert_close(_outputs(load_model(tmp_path / "runs" / "exp1"), x), reference)

    monkeypatch.setattr(ckpt_module, "weights_dir", lambda: tmp_path / "weights")
    _save(tmp_path / "weights" / "fast.safetensors", model)
    torch.testing.assert_close(_outputs(load_model("fast"), x), reference)
    with pytest.raises(ModelError, match="'fastest'; shipped models: fast"):
        load_model("fastest")
    with pytest.raises(ModelError, match="without best.pt"):
        load_model(tmp_path / "runs")


def test_wrapped_models_are_saved_unwrapped(tmp_path, trained):
    model, x, reference = trained
    wrapped = torch.nn.DataParallel(model)  # keys gain "module.", as with DDP
    assert next(iter(wrapped.state_dict())).startswith("module.")
    path = _save(tmp_path / "best.pt", wrapped)
    assert not any(k.startswith("module.") for k in load_checkpoint(path).state_dict)
    torch.testing.assert_close(_outputs(load_model(path), x), reference)


def test_compile_and_ddp_prefixes_are_stripped():
    # torch.compile prefixes "_orig_mod.", DDP "module." (importing dynamo here costs ~5 s).
    state = {"module._orig_mod.fc.weight": torch.ones(2), "_orig_mod.fc.bias": torch.ones(1)}
    assert list(clean_state_dict(state)) == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name", ["bad.pt", "bad.safetensors"])
def test_corrupt_file_is_a_model_error_naming_it(tmp_path, trained, name):
    good = _save(tmp_path / f"good{Path(name).suffix}", trained[0])
    bad = tmp_path / name
    bad.write_bytes(good.read_bytes()[:200])  # truncated
    with pytest.raises(ModelError, match=f"{name}: not a readable"):
        load_model(bad)


def test_foreign_files_are_rejected(tmp_path, trained):
    state_dict_only = tmp_path / "weights.pt"
    torch.save(trained[0].state_dict(), state_dict_only)
    with pytest.raises(ModelError, match="weights.pt: not a ferkit checkpoint"):
        load_checkpoint(state_dict_only)
    newer = tmp_path / "newer.pt"
    torch.save(
        {"format": "ferkit-checkpoint", "version": 2, "arch": "vgg", "state_dict": {}}, newer
    )
    with pytest.raises(ModelError, match="newer.pt: checkpoint format version 2"):
        load_checkpoint(newer)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"onnx")
    with pytest.raises(ModelError, match="unknown checkpoint type '.onnx'"):
        load_checkpoint(other)
    with pytest.raises(ModelError, match="checkpoint not found"):
        load_model(tmp_path / "absent.pt")


def test_weights_that_do_not_fit_the_architecture(tmp_path, trained):
    path = save_checkpoint(
        tmp_path / "mixed.pt", trained[0], arch="seed_cnn", arch_kwargs={}, preprocessing={}
    )
    with pytest.raises(ModelError, match="mixed.pt: cannot rebuild 'seed_cnn'"):
        load_model(path)
    with pytest.raises(ModelError, match="unknown architecture 'nope'"):
        save_checkpoint(
            tmp_path / "n.pt", trained[0], arch="nope", arch_kwargs={}, preprocessing={}
        )
    assert not (tmp_path / "n.pt").exists()


def test_failed_write_leaves_nothing_behind(tmp_path, trained, monkeypatch):
    def broken_save(obj, file):
        Path(file).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path / "best.pt", trained[0])
    assert list(tmp_path.iterdir()) == []


def test_rebuild_ignores_the_pretrained_file(trained):
    # A fine-tuned model must load where its ImageNet starting file does not exist.
    model = trained[0]
    checkpoint = Checkpoint(
        arch="mini_xception",
        arch_kwargs={"act": "elu", "pretrained": "/nowhere/resnet50.pth"},
        state_dict=model.state_dict(),
    )
    rebuilt = checkpoint.build().eval()
    torch.testing.assert_close(_outputs(rebuilt, trained[1]), trained[2])
