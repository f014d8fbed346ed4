"""ferkit.tune: the search space, a whole SQLite study, pruning, and a killed worker's retry.

Trials train mini-Xception for a few epochs on a tiny store whose classes differ in
brightness, so a sane recipe learns something in one epoch and a bad one does not.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from ferkit.config import TrainConfig, apply_overrides, load_config
from ferkit.errors import ConfigError
from ferkit.tune import (
    DEFAULT_SPACE,
    PRUNERS,
    SAMPLERS,
    load_space,
    search_space,
    tune,
    validate_space,
)
from ferkit.tune.study import make_pruner, make_sampler

from conftest import synthetic_faces

REPO = Path(__file__).resolve().parents[1]
# Optuna marks multivariate TPE and the retry helpers "experimental"; they are what we use
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def learnable_store(path: Path, n_train: int = 280, n_val: int = 70) -> Path:
    """A store whose 7 classes are 7 brightness levels: learnable in an epoch or two."""
    from ferkit.data import write_store

    n = n_train + n_val
    labels = np.arange(n) % 7
    images = synthetic_faces(n, 0) * 0.3 + (labels * 25 + 40)[:, None, None]
    splits = np.array([0] * n_train + [1] * n_val)
    images = np.clip(images, 0, 255).astype(np.uint8)
    return write_store(path, images, labels.astype(np.uint8), splits, force=True)


# every trial: one torch thread (on a busy 2-core machine several times faster than two)
TINY = ["--model", "mini_xception", "--batch-size", "32", "--set", "threads=1"]


def tiny_base(store: Path, epochs: int = 2) -> TrainConfig:
    return apply_overrides(
        TrainConfig(),
        {"data.path": str(store), "model.name": "mini_xception", "epochs": epochs,
         "batch_size": 32, "threads": 1},
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return learnable_store(tmp_path_factory.mktemp("tune") / "tiny.h5")


@pytest.fixture(autouse=True)
def restore_threads():
    """Trials set torch's thread count for this process: give the other tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_search_space_follows_conditions_and_config_types():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for model in ("mini_xception", "vgg"):
        base = apply_overrides(TrainConfig(), {"model.name": model})
        for _ in range(12):
            overrides = search_space(study.ask(), DEFAULT_SPACE, base)
            apply_overrides(base, overrides)  # every sample is a valid config
            assert isinstance(overrides["batch_size"], int)
            assert isinstance(overrides["augment.rotate"], float)
            assert ("model.args.width" in overrides) == (model == "vgg")
            scheduler = overrides["sched.name"]
            assert ("sched.warmup_epochs" in overrides) == (scheduler == "cosine")
            assert ("sched.patience" in overrides) == (scheduler == "plateau")
            if scheduler == "plateau":
                assert isinstance(overrides["sched.patience"], int)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_drives_the_space(sampler):
    """A quick study without training: each sampler, past its random start-up trials."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, 0, 9))
    base = TrainConfig()
    for _ in range(6):
        trial = study.ask()
        overrides = search_space(trial, DEFAULT_SPACE, base)
        apply_overrides(base, overrides)
        study.tell(trial, -abs(np.log10(overrides["optim.lr"]) + 2))  # best near lr 0.01
    assert len({t.params["optim.lr"] for t in study.trials}) == 6
    for name in PRUNERS:
        make_pruner(name, epochs=5, trials=9)
    with pytest.raises(ConfigError, match="unknown pruner 'asha'"):
        make_pruner("asha", epochs=5, trials=9)


def test_space_yaml_narrows_widens_and_rejects_typos(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "optim.lr: {low: 1e-3, high: 1e-2, log: true}\n"  # YAML reads 1e-3 as a string
        "augment.erase_p: null\n"
        "model.name: {choices: [mini_xception, seed_cnn]}\n"
        "epochs: 3\n"
    )
    space = load_space(path)
    assert space["optim.lr"] == {"low": 1e-3, "high": 1e-2, "log": True}
    assert "augment.erase_p" not in space and space["epochs"] == 3
    trial = optuna.create_study().ask()
    overrides = search_space(trial, space)
    assert overrides["model.name"] in ("mini_xception", "seed_cnn")
    assert overrides["epochs"] == 3 and 1e-3 <= overrides["optim.lr"] <= 1e-2
    assert not set(trial.params) & {"epochs", "augment.erase_p"}

    with pytest.raises(ConfigError, match=r"space.yaml.*did you mean 'optim.lr'"):
        path.write_text("optim.lrr: {low: 0.001, high: 0.1}\n")
        load_space(path)
    bad = {
        "optim.lr": ({"lo": 0.1, "high": 1.0}, "unknown field"),
        "optim.name": ({"choices": ["sgd", "rmsprop"]}, "not one of"),
        "model.args.widht": ({"choices": [1.0]}, "no model takes 'widht'"),
        "model.name": ({"choices": ["mini_xceptoin"]}, "did you mean 'mini_xception'"),
        "batch_size": ({"low": 64, "high": 32}, "low <= high"),
    }
    for key, (spec, message) in bad.items():
        with pytest.raises(ConfigError, match=message):
            validate_space({key: spec})


def test_example_space_file_is_valid():
    space = load_space(REPO / "configs" / "space.yaml")
    assert "model.name" in space


def test_sqlite_study_end_to_end_and_continues(store, tmp_path):
    from typer.testing import CliRunner

    from ferkit.cli import app

    base, out = tiny_base(store), tmp_path / "study"
    result = tune(base, study_name="e2e", trials=2, out=out, seed=0)
    assert result.counts["complete"] + result.counts["pruned"] == 2
    assert result.storage == f"sqlite:///{(out / 'study.db').resolve()}"
    assert result.baseline_value is not None and result.best_value >= result.baseline_value
    for name in ("trials.csv", "summary.md", "best.yaml", "plots/history.png", "plots/slice.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [row["number"] for row in rows] == ["0", "1"] and rows[0]["baseline"] == "True"
    assert f"| 1 | {result.best_trial} |" in (out / "summary.md").read_text()

    best = load_config(out / "best.yaml")
    best_trial = optuna.load_study(study_name="e2e", storage=result.storage).best_trial
    overrides = best_trial.user_attrs["overrides"]
    expected = apply_overrides(base, {**overrides, "out": str(out / "best")})
    assert best == expected and best.log.progress  # the base config's, not the trials'
    trained = CliRunner().invoke(app, ["train", "--config", str(out / "best.yaml")])
    assert trained.exit_code == 0, trained.output
    assert (out / "best" / "best.pt").exists()

    again = tune(base, study_name="e2e", trials=3, out=out, seed=0, plots=False)  # one more
    assert sum(again.counts.values()) == 3
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 3


def test_bad_configuration_is_pruned(store, tmp_path):
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    space = {"optim.name": {"choices": ["sgd", "adam"]},
             "optim.lr": {"low": 1e-6, "high": 1e5, "log": True}}  # fmt: skip
    study = optuna.create_study(study_name="prune", storage=url, direction="maximize")
    study.enqueue_trial({"optim.name": "adam", "optim.lr": 0.01})  # learns
    study.enqueue_trial({"optim.name": "adam", "optim.lr": 1e-6})  # learns nothing
    study.enqueue_trial({"optim.name": "sgd", "optim.lr": 1e5})  # diverges
    result = tune(tiny_base(store), study_name="prune", trials=3, storage=url, space=space,
                  out=tmp_path, pruner="median", baseline=False, plots=False)  # fmt: skip
    good, slow, wild = optuna.load_study(study_name="prune", storage=url).trials
    assert good.state == optuna.trial.TrialState.COMPLETE and len(good.intermediate_values) == 2
    assert slow.state == optuna.trial.TrialState.PRUNED and list(slow.intermediate_values) == [1]
    assert slow.intermediate_values[1] < good.intermediate_values[1]
    assert wild.state == optuna.trial.TrialState.PRUNED and "diverged" in wild.user_attrs
    assert result.best_trial == good.number and result.counts["pruned"] == 2


def test_killed_worker_trial_is_retried_and_resumed(store, tmp_path):
    out = tmp_path / "study"
    command = [sys.executable, "-m", "ferkit", "tune", "--study", "kill", "--trials", "1",
               "--data", str(store), "--out", str(out), "--epochs", "3", "--heartbeat", "1",
               *TINY]  # fmt: skip
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "trials" / "0000"
    deadline = time.monotonic() + 1800  # a bound for a hung worker, not a speed test

    def epochs_recorded() -> int:  # metrics.csv is written (atomically) after last.pt
        metrics = first / "metrics.csv"
        return len(list(csv.DictReader(metrics.open()))) if metrics.exists() else 0

    while not ((first / "last.pt").exists() and epochs_recorded()) and worker.poll() is None:
        assert time.monotonic() < deadline, "the worker never finished an epoch"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)  # mid-trial: no chance to clean up
    stderr = worker.communicate()[1].decode()
    assert worker.returncode == -signal.SIGKILL, stderr
    done_before = list(csv.DictReader((first / "metrics.csv").open()))
    assert 1 <= len(done_before) < 3

    # The grace period (2 heartbeats, 2 s) passes: the trial is stale. SQLite's timestamps,
    # which Optuna compares, have whole seconds, so 2.5 s could read as 2 (not stale): any
    # wait over grace + 1 s reads as more than the grace, however busy the machine.
    time.sleep(3.5)
    base = tiny_base(store, epochs=3)
    result = tune(base, study_name="kill", trials=1, out=out, heartbeat=1, plots=False)
    killed, retry = optuna.load_study(study_name="kill", storage=result.storage).trials
    assert killed.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.user_attrs["baseline"]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    resumed = list(csv.DictReader((out / "trials" / "0001" / "metrics.csv").open()))
    assert len(resumed) == 3 and resumed[: len(done_before)] == done_before  # not retrained
    assert result.counts == {**result.counts, "complete": 1, "fail": 1, "running": 0}


def test_interrupted_trial_continues_on_the_next_run(store, tmp_path, monkeypatch):
    import ferkit.train.trainer as trainer

    real_train = trainer.train

    def interrupted(config, **kwargs):  # Ctrl-C right after epoch 1's checkpoint
        def stop(stats):
            raise KeyboardInterrupt

        return real_train(config, **{**kwargs, "on_epoch": stop})

    base, out = tiny_base(store), tmp_path / "study"
    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(base, study_name="ctrl-c", trials=1, out=out, plots=False)
    monkeypatch.setattr(trainer, "train", real_train)
    result = tune(base, study_name="ctrl-c", trials=1, out=out, plots=False)
    stopped, continued = optuna.load_study(study_name="ctrl-c", storage=result.storage).trials
    assert stopped.state == optuna.trial.TrialState.FAIL
    assert continued.state == optuna.trial.TrialState.COMPLETE and continued.user_attrs["baseline"]
    first = (out / "trials" / "0000" / "metrics.csv").read_text().splitlines()
    again = (out / "trials" / "0001" / "metrics.csv").read_text().splitlines()
    assert len(first) == 2 and len(again) == 3 and again[:2] == first  # epoch 1 kept
