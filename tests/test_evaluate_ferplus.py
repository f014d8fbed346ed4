"""`evaluate(..., labels="ferplus")`: FER+ majority labels, models scored on the classes
they share with the labels (and the report saying so), temperatures kept only where they
belong, bad input; and the real shipped model on FER+ PrivateTest where the data exists."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.data.store import FerPlusVotes, open_store, write_store
from ferkit.data.targets import VOTE_CODES
from ferkit.errors import DataError, ModelError
from ferkit.evaluate import evaluate
from ferkit.evaluate.labelsets import class_scoring, ferplus_majority_labels
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS
from ferkit.models.checkpoint import load_checkpoint, save_checkpoint
from ferkit.models.registry import create_model

from conftest import synthetic_faces

COLUMN = VOTE_CODES.argsort()  # class code (FERPLUS_EMOTIONS, unknown, not-a-face) → column
# FER+ majority of the 39 test (and val) images: 4 of each FER-2013 emotion, 5 contempt,
# 3 unknown, 2 not-a-face, 1 without votes
MAJORITY = [*np.repeat(np.arange(7), 4), *[7] * 5, *[8] * 3, *[9] * 2, -1]


def votes(code: int) -> list[int]:
    row = [0] * 10
    if code >= 0:
        row[COLUMN[code]] = 8
        row[COLUMN[6 if code != 6 else 3]] = 2
    return row


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """14 train, 39 val and 39 test images; FER-2013 labels cycle, FER+ votes as MAJORITY."""
    path = tmp_path_factory.mktemp("data") / "ferplus.h5"
    splits = np.repeat([0, 1, 2], [14, 39, 39])
    labels = np.concatenate([np.arange(14) % 7, np.arange(39) % 7, np.arange(39) % 7])
    table = np.array([votes(c) for c in [*[0] * 14, *MAJORITY, *MAJORITY]], dtype=np.uint8)
    ferplus = FerPlusVotes(table, table.sum(axis=1) > 0, {"file": "synthetic"})
    return write_store(path, synthetic_faces(92, seed=5), labels, splits, ferplus=ferplus)


def make_run(folder, store, class_names, data_config=None):
    torch.manual_seed(0)
    with open_store(store) as opened:
        prep = opened.preprocessing()
    model = create_model("mini_xception", num_classes=len(class_names)).eval()
    config = {"data": {"val_split": "val", **(data_config or {})}}
    save_checkpoint(
        folder / "best.pt", model, arch="mini_xception", arch_kwargs={}, preprocessing=prep,
        class_names=class_names, config=config, epoch=1, metrics={"val_acc": 0.2},
        train_state={},
    )  # fmt: skip
    return folder


def test_a_7_class_model_is_scored_on_the_7_shared_ferplus_classes(store, tmp_path):
    run = make_run(tmp_path / "fer7", store, EMOTIONS)
    result = evaluate([run], data=store, labels="ferplus", save_temperature=True, bootstrap=20)
    data, head = result.report["data"], result.report["headline"]
    assert data["labels"]["left_out"] == {"unknown": 3, "not_a_face": 2, "no_votes": 1}
    assert data["n"] == 28 and data["scored_classes"] == list(EMOTIONS)
    assert "scored on the 7 classes" in data["scoring"] and "contempt 5" in data["scoring"]
    assert [c["support"] for c in head["metrics"]["per_class"].values()] == [4] * 7
    assert "FER+ majority labels" in result.report["protocol"]["reported_on"]
    assert head["calibration"]["stored_in"].startswith("not stored")
    assert "temperature" not in (load_checkpoint(run / "best.pt").metrics or {})
    markdown = (run / "report.md").read_text()
    assert "Labels: FER+ majority" in markdown and "Classes: scored on the 7 classes" in markdown


def test_an_8_class_model_on_both_label_sets(store, tmp_path):
    run = make_run(tmp_path / "fer8", store, FERPLUS_EMOTIONS, {"labels": "ferplus_votes"})
    on_fer = evaluate([run], data=store, labels="fer2013", save_temperature=True, bootstrap=20,
                      out=tmp_path / "a")  # fmt: skip
    data = on_fer.report["data"]
    assert data["n"] == 39 and data["scored_classes"] == list(EMOTIONS)
    assert "probabilities of contempt dropped and the rest renormalised" in data["scoring"]
    assert on_fer.report["headline"]["calibration"]["stored_in"].startswith("not stored")
    on_ferplus = evaluate([run], data=store, labels="ferplus", save_temperature=True,
                          bootstrap=20, out=tmp_path / "b")  # fmt: skip
    data = on_ferplus.report["data"]
    assert data["n"] == 33 and "scoring" not in data
    per_class = on_ferplus.report["headline"]["metrics"]["per_class"]
    assert per_class["contempt"]["support"] == 5
    # its own labels (selected on FER+ majority): the fitted temperature is kept
    assert on_ferplus.report["headline"]["calibration"]["stored_in"] == str(run / "best.pt")


def test_class_scoring_projects_and_maps():
    scoring = class_scoring(FERPLUS_EMOTIONS, EMOTIONS)
    probs = np.full((2, 8), 0.1)
    probs[:, 7] = 0.3
    np.testing.assert_allclose(scoring.probs(probs), np.full((2, 7), 1 / 7))
    keep, labels = class_scoring(EMOTIONS, FERPLUS_EMOTIONS).rows(np.array([7, 3, 7, 0]))
    assert keep.tolist() == [False, True, False, True] and labels.tolist() == [3, 0]
    assert not class_scoring(EMOTIONS, EMOTIONS).restricted
    # other class lists are never narrowed down: they must match
    assert class_scoring(EMOTIONS[:3], EMOTIONS).model_classes == EMOTIONS
    keep, labels, left_out = ferplus_majority_labels(np.array([votes(7), votes(9), [0] * 10]))
    assert keep.tolist() == [True, False, False] and labels.tolist() == [7]
    assert left_out == {"unknown": 0, "not_a_face": 1, "no_votes": 1}


def test_bad_label_requests(store, tmp_path):
    run = make_run(tmp_path / "fer7", store, EMOTIONS)
    plain = write_store(
        tmp_path / "plain.h5", synthetic_faces(6), np.arange(6) % 6, np.repeat([0, 1, 2], 2)
    )
    with pytest.raises(DataError, match="no FER\\+ votes in this store"):
        evaluate([run], data=plain, labels="ferplus")
    with pytest.raises(DataError, match="unknown labels 'fer\\+'; expected one of"):
        evaluate([run], data=store, labels="fer+")
    with pytest.raises(DataError, match="come from a store's FER\\+ votes"):
        evaluate([run], folder=tmp_path, labels="ferplus")
    odd = make_run(tmp_path / "odd", store, ("happy", "sad", "calm"))
    with pytest.raises(ModelError, match="predicts classes happy, sad, calm"):
        evaluate([odd], data=store, labels="ferplus")


def test_cli_says_which_classes_were_scored(store, tmp_path):
    run = make_run(tmp_path / "fer7", store, EMOTIONS)
    args = ["evaluate", str(run), "--data", str(store), "--labels", "ferplus"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "FER+ majority labels" in done.output and "scored on the 7 classes" in done.output
    assert json.loads((run / "report.json").read_text())["data"]["labels"]["set"] == "ferplus"
