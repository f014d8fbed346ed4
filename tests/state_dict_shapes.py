"""Key → shape maps of foreign state dicts, written out in the tests from their sources,
so that loading them is tested without the real (large, downloaded) files."""

from __future__ import annotations


def batch_norm_shapes(prefix: str, channels: int) -> dict:
    """The five entries of a BatchNorm2d's state dict under `prefix`."""
    stats = {
        f"{prefix}.{k}": (channels,) for k in ("weight", "bias", "running_mean", "running_var")
    }
    return {**stats, f"{prefix}.num_batches_tracked": ()}
