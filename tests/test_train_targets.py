"""Training targets (`data.labels`, `data.classes`): what each mode loads, and that the
trainer learns from soft targets with mixup/cutmix, resumes exactly and records 8 classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.config import TrainConfig, apply_overrides
from ferkit.data.ferplus import VOTE_COLUMNS
from ferkit.data.loader import BatchIterator, load_split
from ferkit.data.store import FerPlusVotes, write_store
from ferkit.data.targets import VOTE_CODES, make_targets, selection_labels
from ferkit.errors import ConfigError, DataError
from ferkit.labels import EMOTIONS, FERPLUS_EMOTIONS
from ferkit.models.checkpoint import load_checkpoint
from ferkit.train.trainer import train
from synthetic_train import PERIODS, learnable_store, stripes

COLUMN = VOTE_CODES.argsort()  # class code → votes column


def votes(label: int, n: int = 8, other: int = 6) -> list[int]:
    """10 votes (file column order): n for class `label`, the rest for class `other`."""
    row = [0] * len(VOTE_COLUMNS)
    row[COLUMN[label]] += n
    row[COLUMN[other]] += 10 - n
    return row


def test_each_mode_keeps_its_rows_and_targets():
    labels = np.array([0, 3, 6, 5, 4])
    table = np.array([
        votes(0),                          # agrees: angry
        votes(4, 6, other=3),              # FER+ says sad 6, happy 4
        votes(8, 6),                       # unknown majority (8 = unknown column)
        votes(7, 9),                       # contempt
        [0] * 10,                          # no votes
    ])  # fmt: skip
    majority = make_targets(labels, table, "ferplus_majority")
    assert majority.keep.tolist() == [True, True, False, False, False]
    assert majority.labels.tolist() == [0, 4] and majority.probs is None
    eight = make_targets(labels, table, "ferplus_majority", "ferplus8")
    assert eight.labels.tolist() == [0, 4, 7] and eight.class_names == FERPLUS_EMOTIONS

    soft = make_targets(labels, table, "ferplus_votes")
    assert soft.keep.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(soft.probs[1], [0, 0, 0, 0.4, 0.6, 0, 0], atol=1e-6)
    np.testing.assert_allclose(soft.probs.sum(axis=1), 1, atol=1e-6)

    blend = make_targets(labels, table, "blend", blend=0.25)
    assert blend.keep.all() and blend.probs.shape == (5, 7)
    np.testing.assert_allclose(blend.probs[1], [0, 0, 0, 0.85, 0.15, 0, 0], atol=1e-6)
    np.testing.assert_allclose(blend.probs[4], np.eye(7)[4], atol=1e-6)  # no votes: one-hot
    assert make_targets(labels, None).labels.tolist() == labels.tolist()


def test_bad_target_settings_are_config_errors():
    labels = np.zeros(3, dtype=np.int64)
    with pytest.raises(ConfigError, match="classes ferplus8 needs FER\\+ labels"):
        make_targets(labels, None, "fer2013", "ferplus8")
    with pytest.raises(ConfigError, match="data.label_blend"):  # range-checked by the config
        apply_overrides(TrainConfig(), {"data.label_blend": 1.5})
    assert selection_labels("ferplus_votes") == "ferplus_majority"
    assert selection_labels("blend", "fer2013") == "fer2013"
    assert selection_labels("fer2013", "ferplus") == "ferplus_majority"


def ferplus_store(path, per_class=(12, 5, 2)):
    """A learnable stripes store (see synthetic_train) whose FER+ votes mostly agree with
    the labels; every 6th image is contempt and every 9th unknown."""
    labels = np.repeat(np.tile(np.arange(len(PERIODS)), 3), np.repeat(per_class, len(PERIODS)))
    splits = np.repeat([0, 1, 2], [c * len(PERIODS) for c in per_class])
    table = np.array([votes(int(k), 7 + i % 3, other=(k + 1) % 7) for i, k in enumerate(labels)])
    table[::6] = votes(7, 8)
    table[::9] = votes(8, 8)
    matched = np.ones(len(labels), bool)
    info = {"file": "synthetic", "join": "file path"}
    write_store(
        path, stripes(labels, 0), labels, splits, force=True,
        ferplus=FerPlusVotes(table.astype(np.uint8), matched, info),
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ferplus_store(tmp_path_factory.mktemp("data") / "ferplus.h5")


def test_loaded_splits_yield_probabilities_and_stratify(store):
    split = load_split(store, "train", "cpu", labels="ferplus_votes", classes="ferplus8")
    assert split.targets.shape == (len(split), 8) and split.class_names == FERPLUS_EMOTIONS
    assert split.class_counts().sum().item() == pytest.approx(len(split))
    x, y = next(iter(BatchIterator(split, 8)))
    assert x.shape == (8, 1, 48, 48) and y.shape == (8, 8) and y.dtype == torch.float32
    assert torch.allclose(y.sum(1), torch.ones(8))
    subset = load_split(store, "train", "cpu", subset=20, labels="blend", classes="ferplus8")
    assert len(subset) == 20 and subset.targets.shape == (20, 8)
    val = load_split(store, "val", "cpu", labels="ferplus_majority")
    assert val.targets is None and 7 not in val.labels.tolist()


def test_fer_plus_labels_need_votes_in_the_store(tmp_path):
    plain = learnable_store(tmp_path / "plain.h5", per_class=(2, 1, 1))
    with pytest.raises(DataError, match="no FER\\+ votes in this store.*--ferplus"):
        load_split(plain, "train", "cpu", labels="ferplus_majority")


def config(store, out, **overrides) -> TrainConfig:
    base = {
        "data.path": str(store),
        "data.labels": "ferplus_votes",
        "data.classes": "ferplus8",
        "out": str(out),
        "model.name": "mini_xception",
        "batch_size": 16,
        "optim.name": "adamw",
        "optim.lr": 0.005,
        "threads": 1,
        "log.progress": False,
        "epochs": 2,
        "augment.mixup_alpha": 0.4,
        "augment.cutmix_alpha": 1.0,
        "label_smoothing": 0.1,
        "class_weights": "sqrt",
    }
    return apply_overrides(TrainConfig(), {**base, **overrides})


def test_soft_targets_train_with_mixing_and_resume_exactly(store, tmp_path):
    whole = train(config(store, tmp_path / "whole"))
    first = train(config(store, tmp_path / "split"), on_epoch=lambda s: s.epoch == 1)
    assert first.epochs == 1
    resumed = train(config(store, tmp_path / "split"), resume=True)
    assert resumed.epochs == 2
    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    assert a.class_names == FERPLUS_EMOTIONS
    assert a.config["data"]["labels"] == "ferplus_votes"
    assert all(np.isfinite([s.train_loss, s.val_loss]).all() for s in whole.history)
    assert 0.0 <= whole.history[-1].train_acc <= 1.0


def test_fer2013_labels_with_fer_plus_val_selection(store, tmp_path):
    cfg = config(
        store, tmp_path / "run", epochs=1,
        **{"data.labels": "fer2013", "data.classes": "fer7", "data.val_labels": "ferplus"},
    )  # fmt: skip
    result = train(cfg)
    assert load_checkpoint(result.best_path).class_names == EMOTIONS
    with pytest.raises(ConfigError, match="ferplus8 needs FER\\+ labels"):
        train(config(store, tmp_path / "bad", **{"data.labels": "fer2013"}))


def test_init_from_a_seven_class_model_carries_the_shared_classes_into_eight(store, tmp_path):
    seven = train(config(
        store, tmp_path / "seven", epochs=1, **{"data.labels": "fer2013", "data.classes": "fer7"}
    ))  # fmt: skip
    train(config(store, tmp_path / "eight", epochs=1, init=str(seven.run_dir),
                 **{"optim.lr": 1e-9, "augment.mixup_alpha": 0.0}))  # fmt: skip
    before = load_checkpoint(seven.best_path).state_dict
    after = load_checkpoint(tmp_path / "eight" / "last.pt").state_dict
    head = [k for k, v in after.items() if v.shape[:1] == (8,) and before[k].shape[:1] == (7,)]
    assert head, "the output layer was not remapped"
    for key in head:  # angry..neutral keep their rows; contempt is new
        assert torch.allclose(after[key][:7], before[key], atol=1e-4), key
        assert not torch.allclose(after[key][7], before[key][0], atol=1e-4), key


def test_an_eight_class_model_ships_scored_on_fer_plus_majority_labels(store, tmp_path):
    import json

    from ferkit.data.store import open_store
    from ferkit.evaluate.labelsets import ferplus_majority_labels
    from ferkit.evaluate.tta import predict_tta
    from ferkit.infer.backends import TorchClassifier
    from ferkit.models.checkpoint import load_model
    from ferkit.ship import ship_model

    run = train(config(store, tmp_path / "run", epochs=1))
    weights, card_file = ship_model(run.run_dir, "plus", data=store, command="c", dest=tmp_path)
    card = json.loads(card_file.read_text())
    assert card["training"]["data"]["labels"]["set"] == "ferplus"
    assert set(card["results"]["test_per_class_recall"]) <= set(FERPLUS_EMOTIONS)
    with open_store(store) as opened:
        faces, _ = opened.split_arrays("test")
        keep, majority_labels, left_out = ferplus_majority_labels(opened.ferplus_votes("test")[0])
    assert left_out["unknown"] > 0 and 7 in majority_labels.tolist()  # contempt is scored
    mode = card["results"]["tta_chosen_on_val"]
    classifier = TorchClassifier(load_model(weights), calibrated=False, tta=False)
    probs = predict_tta(classifier, faces[keep], mode)
    assert card["results"]["test_accuracy"] == float((probs.argmax(1) == majority_labels).mean())
