"""Device-resident batches over an HDF5 store.

All of FER-2013's training split is 28,709 × 48 × 48 uint8 = 66 MB, so it is read once and
kept on the training device as uint8. An epoch is one permutation of row indices; a batch
is one index-select on that tensor followed by `ferkit.preprocess.normalize` on the device.
There is no per-sample Python, no decoding and no worker process in the hot loop, which is
what makes a small network's training step, not data loading, the bottleneck.

Under DDP every rank draws the same permutation (seed + epoch) and keeps its own strided
shard of it, so the ranks see disjoint samples and the same number of batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ferkit.errors import DataError
from ferkit.preprocess import Preprocessing, normalize


@dataclass
class DeviceSplit:
    """One split of a store on a device: uint8 images (N, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    preprocessing: Preprocessing

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=len(self.class_names))


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded subset of `size` rows with the class proportions kept.

    Each class gets its share rounded down, and the rows left over go to the classes with
    the largest remainders, so the result has exactly `size` rows (at least one per class
    present while `size` allows it).
    """
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * size / len(labels)
    take = np.floor(share).astype(int)
    if size >= len(classes):
        take = np.maximum(take, 1)
    extra = size - take.sum()
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    for k in order[: max(extra, 0)]:
        take[k] += 1
    while take.sum() > size:  # the minimum of one per class overshot: trim the largest
        take[np.argmax(take)] -= 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=t, replace=False)
        for c, t in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def load_split(
    store_path: str | Path,
    split: str,
    device: str | torch.device,
    *,
    subset: int = 0,
    seed: int = 0,
) -> DeviceSplit:
    """Read one split of a store onto `device` as uint8 (optionally a stratified subset)."""
    from ferkit.data.store import open_store

    with open_store(store_path) as store:
        images, labels = store.split_arrays(split)
        class_names = store.class_names
        prep = store.preprocessing()
    if len(labels) == 0:
        raise DataError(f"{store_path}: split {split!r} is empty")
    if subset > 0:
        keep = stratified_subset(labels, subset, seed)
        images, labels = images[keep], labels[keep]
    return DeviceSplit(
        images=torch.from_numpy(np.ascontiguousarray(images)).to(device),
        labels=torch.from_numpy(labels.astype(np.int64)).to(device),
        class_names=class_names,
        preprocessing=prep,
    )


class BatchIterator:
    """Normalised (x (B, 1, H, W) float32, y (B,) int64) batches of a `DeviceSplit`.

    shuffle=True draws a new permutation per epoch (`set_epoch`) from `seed + epoch`;
    drop_last drops the incomplete last batch (training, so BatchNorm never sees a
    batch of one). `rank`/`world_size` select this process's shard under DDP.
    """

    def __init__(
        self,
        split: DeviceSplit,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        # A shard shorter than one batch still yields that short batch.
        self.drop_last = drop_last and self.shard_size() >= batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard_size(self) -> int:
        n = len(self.split)
        if self.shuffle and self.world_size > 1:
            return n // self.world_size  # equal shards: every rank runs the same step count
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        size = self.shard_size()
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)

    def indices(self) -> torch.Tensor:
        """This epoch's row indices for this rank (on the split's device)."""
        n = len(self.split)
        device = self.split.labels.device
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size, device=device)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=generator)
        if self.world_size > 1:
            order = order[: self.shard_size() * self.world_size][self.rank :: self.world_size]
        return order.to(device)

    def __iter__(self):
        order = self.indices()
        prep = self.split.preprocessing
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = normalize(self.split.images.index_select(0, idx), prep)
            yield x, self.split.labels.index_select(0, idx)
