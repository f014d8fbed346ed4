"""The shipped weights: each loads, matches its card, and reproduces the card's accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferkit.files import sha256_file
from ferkit.models.checkpoint import (
    load_model,
    shipped_ensembles,
    shipped_models,
    weights_dir,
)
from ferkit.preprocess import Preprocessing
from ferkit.ship import card_path

ENSEMBLES = shipped_ensembles()
SHIPPED = [name for name in shipped_models() if name not in ENSEMBLES]  # single networks
needs_weights = pytest.mark.skipif(not SHIPPED, reason="no weights shipped in src/ferkit/weights")
AS_USED_FACES = 500  # faces run a second time, through the classifier as users open it
needs_ensemble = pytest.mark.skipif(not ENSEMBLES, reason="no ensemble shipped")


def card_of(name: str) -> dict:
    return json.loads(card_path(weights_dir() / f"{name}.safetensors").read_text())


@needs_weights
@pytest.mark.parametrize("name", SHIPPED)
def test_weights_load_and_match_their_card(name):
    weights = weights_dir() / f"{name}.safetensors"
    card = card_of(name)
    assert card["sha256"] == sha256_file(weights)
    assert weights.stat().st_size <= 30 * 2**20
    model = load_model(name)
    assert sum(p.numel() for p in model.parameters()) == card["architecture"]["parameters"]
    # (a card written before a Preprocessing field existed reads with that field's default)
    assert model.ferkit.preprocessing == Preprocessing.from_dict(card["preprocessing"])
    assert card["results"]["tta_chosen_on_val"] in card["results"]["by_tta"]


@pytest.fixture(scope="module")
def private_test(fer2013_archive):
    """All 3,589 PrivateTest faces, decoded from the archive itself (not from a store),
    with their FER-2013 labels and archive paths."""
    from ferkit.data.clean import decode
    from ferkit.data.readers import SourceReader

    faces, labels, paths = [], [], []
    for item in SourceReader(fer2013_archive).items():
        if item.split == 2:
            faces.append(decode(item))
            labels.append(item.label)
            paths.append(item.source_id)
        elif item.split == 0:
            break  # the archive lists test/ before train/
    return np.stack(faces), np.array(labels), paths


def labelled_as_carded(card: dict, private_test, request) -> tuple[np.ndarray, np.ndarray]:
    """The PrivateTest faces and labels the card was scored on: FER-2013's labels, or FER+
    majority labels (read here from the votes file itself) for a model selected on FER+."""
    faces, labels, paths = private_test
    if card["training"]["data"].get("labels", {}).get("set") != "ferplus":
        return faces, labels
    from ferkit.data.ferplus import read_votes
    from ferkit.evaluate.labelsets import ferplus_majority_labels

    votes = read_votes(request.getfixturevalue("ferplus_votes"))
    line = {key: i for i, key in enumerate(votes.keys)}
    rows = [line[p] for p in paths]
    has_votes = votes.has_votes[rows]
    keep, majority, _ = ferplus_majority_labels(votes.votes[rows][has_votes])
    return faces[has_votes][keep], majority


@needs_weights
@pytest.mark.integration
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_accuracy_reproduces_the_card(name, private_test, request):
    from ferkit.evaluate.tta import predict_tta
    from ferkit.infer.loading import open_classifier

    assert len(private_test[1]) == 3_589
    card = card_of(name)
    faces, labels = labelled_as_carded(card, private_test, request)
    mode = card["results"]["tta_chosen_on_val"]
    probs = predict_tta(open_classifier(name, tta=False, calibrated=False), faces, mode)
    accuracy = float((probs.argmax(1) == labels).mean())
    assert abs(accuracy - card["results"]["test_accuracy"]) <= 0.03
    if "tta_applied_by_default" in card["results"]:  # what users get is what the card says
        # (on the first faces only: a second full pass would double this test's minutes)
        as_used = open_classifier(name).predict_proba(faces[:AS_USED_FACES])
        np.testing.assert_array_equal(as_used.argmax(1), probs[:AS_USED_FACES].argmax(1))


@needs_ensemble
@pytest.mark.integration
@pytest.mark.parametrize("name", ENSEMBLES)
def test_shipped_ensemble_reproduces_its_card(name, private_test):
    from ferkit.infer.loading import matching_export, open_classifier

    card = json.loads((weights_dir() / f"{name}.card.json").read_text())
    listed = json.loads((weights_dir() / f"{name}.ensemble.json").read_text())["members"]
    assert listed == card.get("member_files", card["members"])
    assert all(m in SHIPPED for m in card["members"])
    for member, file in zip(card["members"], listed, strict=True):
        if file != member:  # a member's int8 export, made from exactly its shipped weights
            assert file == f"{member}.int8.onnx" and matching_export(member, int8=True)
    faces, labels, _ = private_test
    probs = open_classifier(name).predict_proba(faces)
    accuracy = float((probs.argmax(1) == labels).mean())
    assert abs(accuracy - card["results"]["test_accuracy"]) <= 0.03


def test_every_alias_points_at_a_shipped_file():
    from ferkit.models.checkpoint import shipped_aliases

    for alias, target in shipped_aliases().items():
        assert target in SHIPPED, f"alias {alias!r} → {target!r}, which is not shipped"
        assert load_model(alias).ferkit.path == load_model(target).ferkit.path


def test_alias_resolution(tmp_path, monkeypatch):
    from ferkit.models import checkpoint
    from ferkit.models.registry import create_model

    checkpoint.save_checkpoint(
        tmp_path / "small.safetensors", create_model("mini_xception"),
        arch="mini_xception", arch_kwargs={}, preprocessing={},
    )  # fmt: skip
    (tmp_path / "aliases.json").write_text(json.dumps({"default": "small"}))
    monkeypatch.setattr(checkpoint, "weights_dir", lambda: tmp_path)
    assert checkpoint.resolve_checkpoint("default") == tmp_path / "small.safetensors"
    with pytest.raises(checkpoint.ModelError, match="shipped models: small, default"):
        checkpoint.resolve_checkpoint("large")
