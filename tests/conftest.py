"""Shared fixtures: tiny synthetic FER-like data, and the real archive where present."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ferkit.data.ferplus import locate_ferplus
from ferkit.data.readers import locate_fer2013

# `amp: auto` picks bf16 only on CPUs with native bf16 (AMX, AVX-512 BF16), and bf16 changes
# a tiny model's numbers: the suite runs as on a CPU without it, everywhere (inherited by the
# subprocesses tests start), so no result depends on the machine's CPU model.
os.environ["FERKIT_CPU_BF16"] = "0"


def synthetic_faces(n: int, seed: int = 0) -> np.ndarray:
    """n distinct 48×48 uint8 images with smooth structure (not blank, no two alike)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    images = []
    for _ in range(n):
        a, b, c, d = rng.uniform(0.5, 4.0, size=4)
        base = np.sin(a * xx * np.pi + b) * np.cos(c * yy * np.pi + d)
        noise = rng.normal(0, 0.15, size=(48, 48))
        images.append(np.clip((base + noise + 1.2) * 100, 0, 255).astype(np.uint8))
    return np.stack(images)


@pytest.fixture
def faces():
    return synthetic_faces


@pytest.fixture(scope="session")
def fer2013_archive():
    """Path of the real FER-2013 archive; skips the test where it is absent."""
    path = locate_fer2013()
    if not path.exists():
        pytest.skip(f"FER-2013 archive not found at {path} (set FERKIT_FER2013 to its path)")
    return path


@pytest.fixture(scope="session")
def ferplus_votes():
    """Path of the real FER+ kaggle_votes.csv (fer2013new.csv beside it); skips where absent."""
    path = locate_ferplus()
    if not path.exists():
        pytest.skip(f"FER+ votes not found at {path} (set FERKIT_FERPLUS to kaggle_votes.csv)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    on a shared 2-core machine, two threads contending with other processes run tiny batches
    several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
