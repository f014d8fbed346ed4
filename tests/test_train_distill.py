"""Distillation: a student trains on its labels blended with its teachers' probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.config import DistillConfig, TrainConfig, apply_overrides
from ferkit.data.loader import load_split
from ferkit.errors import ConfigError
from ferkit.train.distill import CACHE, distilled_targets, teacher_probs
from ferkit.train.trainer import train
from synthetic_train import learnable_store

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return learnable_store(tmp_path_factory.mktemp("data") / "stripes.h5", per_class=(8, 4, 1))


@pytest.fixture(scope="module")
def teacher(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(config(store, out, epochs=2))
    return out


def config(store, out, **overrides) -> TrainConfig:
    base = {"data.path": str(store), "out": str(out), "model.name": "mini_xception",
            "batch_size": 16, "optim.name": "adamw", "optim.lr": 0.005, "log.progress": False,
            "threads": 1}  # fmt: skip
    return apply_overrides(TrainConfig(), {**base, **overrides})


def test_targets_blend_labels_with_the_teachers_flip_averaged_probabilities(
    store, teacher, tmp_path
):
    split = load_split(store, "train", torch.device("cpu"))
    probs = teacher_probs(str(teacher), split.images, split.class_names)
    assert probs.shape == (len(split), 7)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(split)))
    mirrored = teacher_probs(str(teacher), split.images.flip(-1), split.class_names)
    torch.testing.assert_close(probs, mirrored, atol=1e-5, rtol=0)  # flip-averaged

    cfg = DistillConfig(teacher=f"{teacher}, {teacher}", weight=0.25)
    got = distilled_targets(cfg, split.images, split.labels, None, split.class_names, tmp_path)
    onehot = torch.nn.functional.one_hot(split.labels, 7).float()
    torch.testing.assert_close(got, 0.75 * onehot + 0.25 * probs, atol=1e-5, rtol=0)
    assert (tmp_path / CACHE).is_file()  # a resumed run reads it instead of the teachers
    softer = DistillConfig(teacher=str(teacher), weight=1.0, temperature=4.0)
    flat = distilled_targets(softer, split.images, split.labels, None, split.class_names, tmp_path)
    assert (flat.max(1).values < probs.max(1).values + 1e-6).all()


def test_a_student_trains_and_resumes_on_distilled_targets(store, teacher, tmp_path):
    out = tmp_path / "student"
    overrides = {"distill.teacher": str(teacher), "distill.weight": 0.5, "model.name": "vgg",
                 "model.args": {"width": 0.125, "fc": 32}}  # fmt: skip
    first = train(config(store, out, epochs=1, **overrides))
    assert np.isfinite(first.history[-1].train_loss)
    assert (out / CACHE).is_file()
    resumed = train(config(store, out, epochs=2, **overrides), resume=True)
    assert [row.epoch for row in resumed.history] == [1, 2]


def test_bad_distillation_settings_name_the_key(store, tmp_path):
    split = load_split(store, "train", torch.device("cpu"))
    bad = {"distill.weight": DistillConfig(teacher="x", weight=0.0),
           "distill.temperature": DistillConfig(teacher="x", temperature=0.0)}  # fmt: skip
    for key, cfg in bad.items():
        with pytest.raises(ConfigError, match=key):
            distilled_targets(cfg, split.images, split.labels, None, split.class_names, tmp_path)
