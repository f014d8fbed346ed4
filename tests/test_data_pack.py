"""`ferkit data pack/unpack`: a compact store copy that trains like its original, and the
GPU script that trains from one inside a budget — on tiny synthetic stores."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ferkit.data import open_store
from ferkit.data.pack import MAX_BLOB_BYTES, pack_store, unpack_store
from ferkit.errors import DataError
from ferkit.models.checkpoint import load_checkpoint
from synthetic_train import learnable_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return learnable_store(tmp_path_factory.mktemp("data") / "stripes.h5", per_class=(6, 3, 2))


def test_round_trip_keeps_labels_ids_and_normalisation_and_val_exactly(store, tmp_path):
    pack = pack_store(store, tmp_path / "s.npz")
    copy = unpack_store(pack, tmp_path / "copy.h5")
    with open_store(store) as a, open_store(copy) as b:
        assert (b.mean, b.std, b.class_names) == (a.mean, a.std, a.class_names)
        for split in ("train", "val"):
            assert np.array_equal(a.split_arrays(split)[1], b.split_arrays(split)[1])
            assert a.source_ids(split) == b.source_ids(split)
        val_a, val_b = a.split_arrays("val")[0], b.split_arrays("val")[0]
        assert np.array_equal(val_a, val_b)  # the split that picks the epoch: lossless
        train_a, train_b = (s.split_arrays("train")[0].astype(int) for s in (a, b))
        assert not np.array_equal(train_a, train_b)  # WebP: lossy ...
        assert np.abs(train_a - train_b).mean() < 4  # ... by a few grey levels (noisy faces)
        assert len(b.split_arrays("test")[1]) == 0  # not packed by default


def test_lossless_everywhere_when_asked(store, tmp_path):
    pack = pack_store(store, tmp_path / "s.npz", splits=("train", "test"), lossy=())
    with open_store(store) as a, open_store(unpack_store(pack, tmp_path / "c.h5")) as b:
        for split in ("train", "test"):
            assert np.array_equal(a.split_arrays(split)[0], b.split_arrays(split)[0])


def _tamper(pack: Path, out: Path, **changes) -> Path:
    with np.load(pack) as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(changes)
    with open(out, "wb") as handle:
        np.savez(handle, **arrays)
    return out


def test_corrupt_packs_fail_with_one_line_naming_split_and_row(store, tmp_path):
    pack = pack_store(store, tmp_path / "s.npz")
    with np.load(pack) as data:
        blobs, offsets = data["val_blobs"].copy(), data["val_offsets"].copy()
    garbled = blobs.copy()
    garbled[offsets[2] : offsets[3]] = 7  # row 2 no longer a PNG
    cases = {
        "garbled": ({"val_blobs": garbled}, "val row 2"),
        "out of bounds": ({"val_offsets": offsets + np.arange(len(offsets))}, "val row"),
        "huge blob": (
            {"val_offsets": np.concatenate([[0], offsets[1:] + MAX_BLOB_BYTES])},
            "val row 0: face data out of bounds",
        ),
        "no meta": ({"meta": np.frombuffer(b"{oops", np.uint8)}, "not a ferkit pack"),
    }
    for name, (change, message) in cases.items():
        bad = _tamper(pack, tmp_path / f"{name}.npz", **change)
        with pytest.raises(DataError, match=message):
            unpack_store(bad, tmp_path / f"{name}.h5")
        assert not (tmp_path / f"{name}.h5").exists(), name  # nothing half-written
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="text.npz: not a readable .npz"):
        unpack_store(tmp_path / "text.npz", tmp_path / "t.h5")


def test_cli_packs_and_refuses_bad_arguments_in_one_line(store, tmp_path):
    def ferkit(*args):
        command = [sys.executable, "-m", "ferkit", "data", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True)

    done = ferkit("pack", store, "--out", tmp_path / "p.npz")
    assert done.returncode == 0 and "MB)" in done.stdout, done.stderr
    again = ferkit("pack", store, "--out", tmp_path / "p.npz")
    assert again.returncode == 1 and "already exists" in again.stderr
    wrong = ferkit("pack", store, "--out", tmp_path / "q.npz", "--splits", "train,nope")
    assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1
    assert "nope" in wrong.stderr and not (tmp_path / "q.npz").exists()
    unpacked = ferkit("unpack", tmp_path / "p.npz", "--out", tmp_path / "u.h5")
    assert unpacked.returncode == 0, unpacked.stderr
    missing = ferkit("unpack", tmp_path / "none.npz", "--out", tmp_path / "v.h5")
    assert missing.returncode == 1 and "pack not found" in missing.stderr


def _gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "scripts" / "gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_epochs_that_fit_the_budget():
    fit = _gpu_script().epochs_that_fit
    assert fit(budget_s=330, spent_s=30, epoch_s=2.0, cap=200) == 150
    assert fit(budget_s=330, spent_s=30, epoch_s=1.0, cap=200) == 200  # capped by the recipe
    assert fit(budget_s=330, spent_s=400, epoch_s=2.0, cap=200) == 1  # over budget: still one


def test_gpu_script_trains_from_a_pack_and_leaves_joinable_parts(store, tmp_path, one_thread):
    pack = pack_store(store, tmp_path / "s.npz")
    out = tmp_path / "out"
    tiny = ["model.args.width=0.25", "batch_size=16", "epochs=3", "threads=1", "val_tta=none"]
    summary = _gpu_script().main(
        ["--pack", str(pack), "--out", str(out), "--budget-s", "0", "--part-mb", "0.2"]
        + [f"--set={item}" for item in tiny]
    )
    assert summary["epochs"] == 1 and summary["cap"] == 3  # no budget left: one epoch
    assert json.loads((out / "summary.json").read_text()) == summary
    parts = sorted(out.glob("best.safetensors.part*"), key=lambda p: int(p.name[21:]))
    assert len(parts) >= 2 and [p.name for p in parts] == summary["parts"]
    assert all(p.stat().st_size <= 200_000 for p in parts)
    joined = tmp_path / "best.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    checkpoint = load_checkpoint(joined)
    assert checkpoint.arch == "resnet18" and checkpoint.epoch == 1
    assert (out / "metrics.csv").is_file() and (out / "config.yaml").is_file()
