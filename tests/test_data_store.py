"""The HDF5 store: contract, atomic writes, version checks."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ferkit.data import open_store, write_store
from ferkit.data.store import FORMAT_VERSION
from ferkit.errors import DataError

from conftest import synthetic_faces


def make_store(path, n=30):
    images = synthetic_faces(n)
    labels = np.arange(n) % 7
    splits = np.array([2, 0, 1] * (n // 3))
    return write_store(path, images, labels, splits, [f"id{i}" for i in range(n)]), images, splits


def test_round_trip_groups_splits_contiguously(tmp_path):
    path, images, splits = make_store(tmp_path / "s.h5")
    with open_store(path) as store:
        train, train_labels = store.split_arrays("train")
        np.testing.assert_array_equal(train, images[splits == 0])
        np.testing.assert_array_equal(train_labels, (np.arange(30) % 7)[splits == 0])
        assert store.source_ids("test")[:2] == ["id0", "id3"]
        assert store.counts()["val"]["disgust"] == sum(
            1 for i in range(30) if splits[i] == 1 and i % 7 == 1
        )
        expected_mean = images[splits == 0].mean() / 255
        assert store.mean == pytest.approx(expected_mean, rel=1e-6)
        assert store.preprocessing().std == pytest.approx(images[splits == 0].std() / 255)
    with h5py.File(path) as f:
        assert f["images"].dtype == np.uint8 and f["labels"].dtype == np.uint8
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f["split"][:].tolist() == sorted(f["split"][:].tolist())


def test_newer_format_version_is_refused(tmp_path):
    path, _, _ = make_store(tmp_path / "s.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(DataError, match="newer than this ferkit reads"):
        open_store(path)


def test_not_a_store(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable HDF5 store"):
        open_store(tmp_path / "x.h5")
    with pytest.raises(DataError, match="no such store"):
        open_store(tmp_path / "missing.h5")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match="disagree"):
        write_store(tmp_path / "s.h5", np.zeros((3, 48, 48)), np.zeros(2), np.zeros(3))
    assert list(tmp_path.iterdir()) == []
