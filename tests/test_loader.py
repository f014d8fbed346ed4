"""Device-resident batches: normalisation, epoch permutations, DDP shards, subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.data.loader import BatchIterator, load_split, stratified_subset
from ferkit.data.store import open_store, write_store
from ferkit.errors import DataError
from ferkit.preprocess import normalize


@pytest.fixture
def store(tmp_path, faces):
    labels = np.repeat(np.arange(7), 10)  # 70 rows: 50 train, 20 val
    splits = np.where(np.arange(70) % 7 < 5, 0, 1)
    splits[np.arange(70) % 10 == 0] = 0  # every class keeps train rows
    return write_store(tmp_path / "s.h5", faces(70), labels, splits)


def test_load_split_matches_the_store(store):
    split = load_split(store, "train", "cpu")
    with open_store(store) as opened:
        images, labels = opened.split_arrays("train")
        assert split.preprocessing == opened.preprocessing()
    assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
    assert np.array_equal(split.images.numpy(), images)
    assert np.array_equal(split.labels.numpy(), labels)


def test_batches_are_normalised_like_preprocess(store):
    split = load_split(store, "val", "cpu")
    x, y = next(iter(BatchIterator(split, 8)))
    expected = normalize(split.images[:8].numpy(), split.preprocessing)
    assert x.shape == (8, 1, 48, 48) and x.dtype == torch.float32
    assert np.allclose(x.numpy(), expected, atol=1e-6)
    assert torch.equal(y, split.labels[:8])


def test_shuffled_epoch_is_a_seeded_permutation(store):
    split = load_split(store, "train", "cpu")
    loader = BatchIterator(split, 16, shuffle=True, drop_last=True, seed=1)
    assert len(loader) == len(split) // 16
    first = loader.indices()
    assert sorted(first.tolist()) == list(range(len(split)))
    assert torch.equal(first, BatchIterator(split, 16, shuffle=True, seed=1).indices())
    loader.set_epoch(1)
    assert not torch.equal(first, loader.indices())
    ys = torch.cat([y for _, y in loader])
    assert len(ys) == len(loader) * 16


def test_ddp_shards_are_disjoint_and_equal(store):
    split = load_split(store, "train", "cpu")
    shards = [
        BatchIterator(split, 4, shuffle=True, seed=3, rank=r, world_size=3).indices()
        for r in range(3)
    ]
    assert len({len(s) for s in shards}) == 1
    joined = torch.cat(shards).tolist()
    assert len(set(joined)) == len(joined) == 3 * (len(split) // 3)
    # Evaluation shards (no shuffle) cover every row once.
    evals = [BatchIterator(split, 4, rank=r, world_size=3).indices() for r in range(3)]
    assert sorted(torch.cat(evals).tolist()) == list(range(len(split)))


def test_short_split_still_yields_a_batch(store):
    split = load_split(store, "val", "cpu")
    loader = BatchIterator(split, 1000, shuffle=True, drop_last=True)
    assert len(loader) == 1 and len(next(iter(loader))[1]) == len(split)


def test_stratified_subset_keeps_proportions_and_is_seeded():
    labels = np.repeat(np.arange(7), [400, 40, 300, 700, 350, 250, 500])
    keep = stratified_subset(labels, 254, seed=0)
    assert len(keep) == 254 and len(np.unique(keep)) == 254
    assert np.array_equal(keep, np.sort(keep))
    counts = np.bincount(labels[keep], minlength=7)
    expected = np.bincount(labels, minlength=7) * 254 / len(labels)
    assert np.all(np.abs(counts - expected) <= 1)
    assert np.array_equal(keep, stratified_subset(labels, 254, seed=0))
    assert not np.array_equal(keep, stratified_subset(labels, 254, seed=1))
    assert len(stratified_subset(labels, 10**6)) == len(labels)


def test_subset_on_load_and_bad_input(store, tmp_path):
    split = load_split(store, "train", "cpu", subset=14, seed=0)
    assert len(split) == 14 and set(split.labels.tolist()) == set(range(7))
    with pytest.raises(DataError, match="empty"):
        load_split(store, "test", "cpu")
    with pytest.raises(DataError, match="batch size"):
        BatchIterator(split, 0)
