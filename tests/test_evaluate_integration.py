"""Evaluation on real FER-2013 faces (skips where the archive is absent).

No trained checkpoint is part of the repository, so these tests check the mechanics on
real data with a randomly initialised model — structure, counts and files, not accuracy:
500 PrivateTest faces (with 300 PublicTest faces for calibration) from the archive, and a
labelled folder of real JPEGs under synonym folder names.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ferkit.data.clean import decode
from ferkit.data.readers import SourceReader
from ferkit.data.store import open_store, write_store
from ferkit.evaluate import evaluate
from ferkit.labels import EMOTIONS
from ferkit.models.checkpoint import save_checkpoint
from ferkit.models.registry import create_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

N_TEST, N_VAL = 500, 300
SYNONYMS = {"angry": "anger", "happy": "happiness", "sad": "sadness", "surprise": "surprised"}


@pytest.fixture(scope="module")
def real(fer2013_archive, tmp_path_factory):
    """A store of 500 test + 300 val real faces spread evenly over the archive's splits,
    a random mini-Xception run folder for it, and the raw JPEG bytes of some test faces."""
    tmp = tmp_path_factory.mktemp("real")
    items = {1: [], 2: []}
    for item in SourceReader(fer2013_archive).items():
        if item.split in items:
            items[item.split].append(item)
        elif len(items[1]) == len(items[2]) == 3589:
            break  # the evaluation splits are complete; the train images are not needed
    picked = {
        split: [items[split][i] for i in np.linspace(0, len(items[split]) - 1, n).astype(int)]
        for split, n in ((2, N_TEST), (1, N_VAL))
    }
    rows = picked[2] + picked[1]
    store = write_store(
        tmp / "real.h5",
        np.stack([decode(item) for item in rows]),
        [item.label for item in rows],
        [item.split for item in rows],
        [item.source_id for item in rows],
    )
    torch.manual_seed(0)
    with open_store(store) as opened:
        prep = opened.preprocessing()
    save_checkpoint(
        tmp / "run" / "best.pt", create_model("mini_xception").eval(), arch="mini_xception",
        arch_kwargs={}, preprocessing=prep, config={"data": {"val_split": "val"}}, epoch=0,
    )  # fmt: skip
    return store, tmp / "run", picked[2][::7][:70], tmp


def test_real_test_split_mechanics(real):
    store, run, _, _ = real
    result = evaluate([run], data=store, tta="flip", bootstrap=100)
    report = json.loads((run / "report.json").read_text())
    metrics = report["headline"]["metrics"]
    assert metrics["n"] == N_TEST and np.sum(metrics["confusion"]) == N_TEST
    with open_store(store) as opened:
        _, labels = opened.split_arrays("test")
        ids = opened.source_ids("test")
    counts = np.bincount(labels, minlength=7)
    assert [c["support"] for c in metrics["per_class"].values()] == counts.tolist()
    assert (counts > 0).all()  # an even spread over the split reaches every class
    assert all("PrivateTest" in m["id"] for m in report["misclassified"])
    assert {m["id"] for m in report["misclassified"]} <= set(ids)
    assert report["tta"] == {"mode": "flip", "views": 2}
    assert report["members"][0]["calibration"]["source"] == "fitted on val (PublicTest)"
    assert (result.out / "misclassified.png").stat().st_size > 5000


def test_real_jpegs_in_a_labelled_folder(real):
    _, run, items, tmp = real
    root = tmp / "folder"
    for k, item in enumerate(items):
        name = EMOTIONS[item.label]
        folder = root / SYNONYMS.get(name, name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k}.jpg").write_bytes(item.payload)
    plain = evaluate([run], folder=root, detector=None, out=tmp / "plain", bootstrap=10).report
    assert plain["data"]["n"] == len(items) and plain["data"]["failures"]["count"] == 0
    detected = evaluate([run], folder=root, out=tmp / "haar", bootstrap=10).report
    # 48×48 crops are mostly too small for the detector: those are classified whole, listed
    assert detected["data"]["n"] == len(items)
    assert 0 <= detected["data"]["no_face"]["count"] <= len(items)
