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
    """One split of a store on a device: uint8 images (N, H, W) and int64 labels (N,).

    `targets` (N, C) float32, when set, are per-image probability vectors (FER+ votes, a
    blend, a teacher's predictions) that batches yield instead of the labels."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> torch.Tensor:
        """Images per class; the summed probabilities where the targets are soft."""
        if self.targets is not None:
            return self.targets.sum(dim=0)
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
    labels: str = "fer2013",
    classes: str = "fer7",
    blend: float = 0.5,
) -> DeviceSplit:
    """Read one split of a store onto `device` as uint8 (optionally a stratified subset),
    with the targets of a `data.labels` mode and `data.classes` set (`ferkit.data.targets`);
    rows a mode leaves out (e.g. FER+ unknown) are not loaded."""
    from ferkit.data.store import open_store
    from ferkit.data.targets import make_targets

    with open_store(store_path) as store:
        images, fer_labels = store.split_arrays(split)
        votes = store.ferplus_votes(split)[0] if labels != "fer2013" else None
        prep = store.preprocessing()
        names = store.class_names
    if len(fer_labels) == 0:
        raise DataError(f"{store_path}: split {split!r} is empty")
    targets = make_targets(fer_labels, votes, labels, classes, blend, names)
    if not targets.keep.all():  # FER+ modes leave rows out; the others keep the one read
        images = images[targets.keep]
    probs = targets.probs
    if len(images) == 0:
        raise DataError(f"{store_path}: no image of split {split!r} has a {labels} label")
    hard = targets.labels
    if subset > 0:
        keep = stratified_subset(hard, subset, seed)
        images, hard = images[keep], hard[keep]
        probs = probs[keep] if probs is not None else None
    return DeviceSplit(
        images=torch.from_numpy(np.ascontiguousarray(images)).to(device),
        labels=torch.from_numpy(hard).to(device),
        class_names=targets.class_names,
        preprocessing=prep,
        targets=torch.from_numpy(probs).to(device) if probs is not None else None,
    )


class BatchIterator:
    """Normalised (x (B, 1, H, W) float32, y) batches of a `DeviceSplit`: y is (B,) int64
    labels, or (B, C) float32 probabilities where the split has soft targets.

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
            y = self.split.targets if self.split.targets is not None else self.split.labels
            yield x, y.index_select(0, idx)
