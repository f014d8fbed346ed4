"""Shared fixtures: tiny synthetic FER-like data, tiny untrained models, one torch thread,
and the real archive where present."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from ferkit.data.ferplus import locate_ferplus
from ferkit.data.readers import locate_fer2013
from ferkit.preprocess import Preprocessing

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


# The preprocessing of the tiny models below (a non-default one, so tests can tell it is used).
TINY_PREP = Preprocessing(mean=0.5, std=0.25, margin=0.1)


def tiny_net(preprocessing: Preprocessing = TINY_PREP):
    """A tiny untrained classifier with ferkit metadata, in memory: for tests of the pipeline,
    the server and the page, where the model is not under test."""
    import torch

    from ferkit.labels import EMOTIONS
    from ferkit.models.checkpoint import Checkpoint

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 7),
    ).eval()  # fmt: skip
    net.ferkit = Checkpoint(arch="tiny", class_names=EMOTIONS, preprocessing=preprocessing)
    return net


def save_tiny_checkpoint(
    path, *, seed: int = 0, preprocessing: Preprocessing = TINY_PREP, head_scale: float = 1.0,
    num_classes: int = 7, **extra,
):  # fmt: skip
    """An untrained mini-Xception saved as a real checkpoint file (a registered architecture);
    `head_scale` > 1 spreads its probabilities so labels differ from face to face (an
    untouched one says about 1/7 for everything). `extra` goes to `save_checkpoint`."""
    import torch

    from ferkit.models.checkpoint import save_checkpoint
    from ferkit.models.registry import create_model

    torch.manual_seed(seed)
    kwargs = {} if num_classes == 7 else {"num_classes": num_classes}
    net = create_model("mini_xception", **kwargs)
    if head_scale != 1.0:
        with torch.no_grad():
            net.head.weight.mul_(head_scale)
    return save_checkpoint(
        path, net, arch="mini_xception", arch_kwargs=kwargs, preprocessing=preprocessing, **extra
    )


@pytest.fixture(scope="module")
def tiny_model():
    """`tiny_net()`: a tiny untrained in-memory classifier (the pipeline is under test)."""
    return tiny_net()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """`save_tiny_checkpoint` in a temporary folder: a real checkpoint file."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")


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


def load_script(name: str, folder: str = "scripts"):
    """A module of scripts/ or benchmarks/ (not packages), loaded from its file for its
    tests. Its folder is on sys.path only while it loads (benchmarks import `_common`), so
    the folder's other modules (benchmarks/train.py, data.py, ...) never shadow anything."""
    path = Path(__file__).resolve().parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
