"""The training loop on tiny synthetic stores: it learns, resumes exactly, writes a
self-describing run folder, stops early, and the CLI drives it."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.config import SchedulerConfig, TrainConfig, apply_overrides, load_config
from ferkit.data.store import open_store
from ferkit.errors import ConfigError
from ferkit.models.checkpoint import load_checkpoint, load_model
from ferkit.train.precision import resolve_amp
from ferkit.train.schedule import EarlyStopping, LRSchedule
from ferkit.train.trainer import class_weights, train
from synthetic_train import learnable_store

TIMING = ("images_per_s", "seconds")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: faster here, runs stay exact


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return learnable_store(tmp_path_factory.mktemp("data") / "stripes.h5", per_class=(16, 6, 1))


def config(store, out, **overrides) -> TrainConfig:
    base = {
        "data.path": str(store),
        "out": str(out),
        "model.name": "mini_xception",
        "batch_size": 16,
        "optim.name": "adamw",
        "optim.lr": 0.005,
        "log.progress": False,
    }
    return apply_overrides(TrainConfig(), {**base, **overrides})


def test_learns_a_learnable_dataset_and_writes_the_run_folder(store, tmp_path):
    cfg = config(store, tmp_path / "run", epochs=8, **{"sched.warmup_epochs": 0.0})
    result = train(cfg)
    assert result.best_val_acc >= 0.9, [s.val_acc for s in result.history]
    assert result.history[-1].train_loss < result.history[0].train_loss
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "curves.png", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml") == cfg
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    assert set(rows[0]) == {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                            "images_per_s", "seconds", "cpu"}  # fmt: skip
    assert float(rows[result.best_epoch - 1]["val_acc"]) == pytest.approx(result.best_val_acc)


def test_best_checkpoint_rebuilds_its_model_alone(store, tmp_path):
    cfg = config(store, tmp_path / "run", epochs=1, **{"model.args.dropout": 0.1})
    result = train(cfg)
    model = load_model(tmp_path / "run" / "best.pt")
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint.arch == "mini_xception" and checkpoint.arch_kwargs == {"dropout": 0.1}
    assert checkpoint.epoch == 1 and checkpoint.config == cfg.to_dict()
    with open_store(store) as opened:
        assert checkpoint.preprocessing == opened.preprocessing()
        assert checkpoint.class_names == opened.class_names
    x = torch.randn(5, 1, 48, 48)
    result.model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), result.model(x), atol=1e-5)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(store, tmp_path):
    overrides = {
        "epochs": 3,
        "ema_decay": 0.9,
        "grad_clip": 5.0,
        "label_smoothing": 0.1,
        "model.args.dropout": 0.2,
        "augment.mixup_alpha": 0.4,
        "augment.erase_p": 0.5,
        "data.subset": 56,
    }
    whole = train(config(store, tmp_path / "whole", **overrides))
    first = train(config(store, tmp_path / "split", **overrides), on_epoch=lambda s: s.epoch == 2)
    assert first.epochs == 2
    resumed = train(config(store, tmp_path / "split", **overrides), resume=True)
    assert resumed.epochs == 3
    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for key, value in a.state_dict.items():
        assert torch.equal(value, b.state_dict[key]), key
    for key, value in a.train_state["model"].items():
        assert torch.equal(value, b.train_state["model"][key]), key
    for x, y in zip(whole.history, resumed.history, strict=True):
        assert {k: v for k, v in x.to_dict().items() if k not in TIMING} == {
            k: v for k, v in y.to_dict().items() if k not in TIMING
        }


def test_run_folder_guards(store, tmp_path):
    with pytest.raises(ConfigError, match="cannot resume"):
        train(config(store, tmp_path / "new", epochs=1), resume=True)
    train(config(store, tmp_path / "used", epochs=1, **{"data.subset": 14}))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(config(store, tmp_path / "used", epochs=1, **{"data.subset": 14}))
    # A finished run resumes to no further epochs.
    again = train(config(store, tmp_path / "used", epochs=1, **{"data.subset": 14}), resume=True)
    assert again.epochs == 1


def test_early_stopping_stops_after_patience(store, tmp_path):
    cfg = config(store, tmp_path / "run", epochs=6, patience=1, **{"optim.lr": 1e-12})
    result = train(cfg)
    assert result.stopped_early and result.epochs < 6
    assert result.epochs == result.best_epoch + 1
    stopper = EarlyStopping(patience=2)
    assert [stopper.update(v, e) for e, v in enumerate([0.5, 0.6, 0.6, 0.55])] == [
        True, True, False, False,
    ]  # fmt: skip
    assert stopper.should_stop and stopper.best_epoch == 1


def test_schedules():
    params = [torch.nn.Parameter(torch.zeros(1))]

    def lrs(cfg, epochs=4, steps=5, metric=None):
        optimizer = torch.optim.SGD(params, lr=0.1)
        schedule = LRSchedule(optimizer, cfg, epochs=epochs, steps_per_epoch=steps, base_lr=0.1)
        seen = []
        for epoch in range(epochs):
            for _ in range(steps):
                seen.append(schedule.lr)
                optimizer.step()
                schedule.step_batch()
            schedule.step_epoch(metric if metric is not None else epoch)
        return seen

    cosine = lrs(SchedulerConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.01))
    assert cosine[:5] == sorted(cosine[:5]) and cosine[4] == pytest.approx(0.1)
    assert cosine[5:] == sorted(cosine[5:], reverse=True) and cosine[-1] < 0.01
    onecycle = lrs(SchedulerConfig(name="onecycle", pct_start=0.25))
    assert max(onecycle) == pytest.approx(0.1, rel=0.01) and onecycle[-1] < 1e-3
    for steps in (1, 2, 4):  # a few batches: pct_start × steps − 1 would be 0 or less
        short = lrs(SchedulerConfig(name="onecycle", pct_start=0.2), epochs=1, steps=steps)
        assert all(0 < lr <= 0.1 + 1e-9 for lr in short)
    step = lrs(SchedulerConfig(name="step", step_size=2, gamma=0.5))
    assert step[0] == 0.1 and step[-1] == pytest.approx(0.05)
    plateau = lrs(SchedulerConfig(name="plateau", patience=0, factor=0.5), metric=0.3)
    assert plateau[-1] < plateau[0]


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_resumed_schedule_may_run_longer(name):
    """Resuming with more epochs continues from the saved step on the new, longer schedule."""
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    short = LRSchedule(optimizer, SchedulerConfig(name=name), epochs=2, steps_per_epoch=5,
                       base_lr=0.1)  # fmt: skip
    for _ in range(10):
        optimizer.step()
        short.step_batch()
    end_of_short = short.lr
    resumed = torch.optim.SGD(params, lr=0.1)
    longer = LRSchedule(resumed, SchedulerConfig(name=name), epochs=4, steps_per_epoch=5,
                        base_lr=0.1)  # fmt: skip
    resumed.load_state_dict(optimizer.state_dict())
    longer.load_state_dict(short.state_dict())
    rates = []
    for _ in range(10):  # steps 11..20 of 20: past the peak, annealing to the end
        resumed.step()
        longer.step_batch()
        rates.append(longer.lr)
    assert end_of_short < 0.01 < 0.05 < rates[0]
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.01


def test_class_weights_and_amp_choice():
    counts = torch.tensor([10, 0, 30])
    balanced = class_weights(counts, "balanced")
    assert balanced.tolist() == pytest.approx([2.0, 0.0, 2 / 3])
    assert class_weights(counts, "sqrt").tolist() == pytest.approx([2**0.5, 0.0, (2 / 3) ** 0.5])
    assert class_weights(counts, "none") is None
    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    assert resolve_amp("auto", cpu) is None  # the suite runs as on a CPU without native bf16


@pytest.mark.parametrize("forced, expected", [("0", None), ("1", torch.bfloat16)])
def test_native_bf16_detection_can_be_overridden(monkeypatch, forced, expected):
    monkeypatch.setenv("FERKIT_CPU_BF16", forced)
    assert resolve_amp("auto", torch.device("cpu")) is expected


def test_bf16_autocast_and_class_weights_run(store, tmp_path):
    cfg = config(
        store, tmp_path / "run", epochs=1, amp="bf16", class_weights="balanced",
        **{"sched.name": "onecycle", "data.subset": 28},
    )  # fmt: skip
    result = train(cfg)
    assert result.amp == "bfloat16" and result.epochs == 1
    assert torch.isfinite(torch.tensor(result.history[0].train_loss))


def test_cli_train_resume_and_config_round_trip(store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["train", "--model", "mini_xception", "--data", str(store), "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--subset", "28", "--lr", "0.01",
            "--set", "log.progress=false", "--set", "optim.name=adamw"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best val accuracy" in result.output
    saved = load_config(out / "config.yaml")
    assert saved.data.subset == 28 and saved.optim.lr == 0.01 and saved.optim.name == "adamw"
    # The saved config trains again as is, and --resume picks up the run's own config.
    again = runner.invoke(app, ["train", "--config", str(out / "config.yaml"), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert load_config(out / "config.yaml") == saved
    resumed = runner.invoke(app, ["train", "--out", str(out), "--resume", "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out / "last.pt").epoch == 2


def test_cli_reports_config_errors_on_one_line(store, tmp_path):
    failed = subprocess.run(
        [sys.executable, "-m", "ferkit", "train", "--data", str(store), "--out", str(tmp_path),
         "--set", "optim.lrr=1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "ferkit: error: unknown config key 'optim.lrr'; did you mean 'optim.lr'? (valid: beta1, "
        "beta2, eps, lr, momentum, name, nesterov, weight_decay)"
    ]


def test_unit_scaling_and_adam_eps_reach_the_checkpoint_and_the_optimizer(store, tmp_path):
    """data.scale=unit trains on pixel/255 (recorded as mean 0, std 1); optim.eps reaches Adam."""
    from ferkit.train.schedule import build_optimizer

    cfg = config(store, tmp_path / "unit", epochs=1, **{"data.scale": "unit", "optim.eps": 1e-7})
    train(cfg)
    prep = load_checkpoint(tmp_path / "unit" / "best.pt").preprocessing
    assert (prep.mean, prep.std) == (0.0, 1.0)
    optimizer = build_optimizer(
        torch.nn.Linear(2, 2), apply_overrides(cfg, {"optim.name": "adam"}).optim
    )
    assert optimizer.defaults["eps"] == 1e-7


def test_val_tta_flip_scores_epochs_like_evaluate_with_flip(store, tmp_path):
    import numpy as np

    from ferkit.evaluate.tta import predict_tta
    from ferkit.infer.backends import TorchClassifier

    cfg = config(store, tmp_path / "run", epochs=2, val_tta="flip")
    result = train(cfg)
    with open_store(store) as opened:
        faces, labels = opened.split_arrays("val")
    classifier = TorchClassifier(load_model(tmp_path / "run" / "last.pt"), calibrated=False)
    flipped = predict_tta(classifier, faces, "flip").argmax(1)
    assert result.history[-1].val_acc == pytest.approx(np.mean(flipped == labels), abs=1e-6)
    assert load_config(tmp_path / "run" / "config.yaml").val_tta == "flip"


def test_metrics_record_the_cpu_flags_of_every_epoch(store, tmp_path):
    from ferkit.hardware import cpu_flags
    from ferkit.train.monitor import read_metrics

    result = train(config(store, tmp_path / "run", epochs=1, **{"data.subset": 28}))
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert [row.cpu for row in rows] == [cpu_flags()] and cpu_flags()


def test_init_starts_from_a_checkpoints_weights_and_checks_the_architecture(store, tmp_path):
    first = train(config(store, tmp_path / "a", epochs=1, **{"data.subset": 28}))
    tuned = config(store, tmp_path / "b", epochs=1, init=str(first.run_dir), **{"optim.lr": 1e-9})
    second = train(tuned)
    before = load_model(first.run_dir / "last.pt").state_dict()
    after = load_model(second.run_dir / "last.pt").state_dict()
    weights = [k for k in before if k.endswith("weight")]
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in weights)
    with pytest.raises(ConfigError, match="init"):
        train(config(store, tmp_path / "c", init=str(first.run_dir), **{"model.name": "vgg"}))


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_only_on_a_terminal_else_one_log_line_per_epoch(monkeypatch, caplog, terminal):
    """Redirected to a log file, a long run still reports every epoch as it ends."""
    from rich.console import Console

    from ferkit.train.monitor import EpochStats, ProgressBar

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: terminal))
    stats = EpochStats(3, 0.1, 1.2, 0.5, 1.1, 0.55, 100.0, 9.0)
    caplog.set_level("INFO", logger="ferkit.train.monitor")
    bar = ProgressBar(enabled=True, epochs=5)
    bar.start_epoch(3, batches=2)
    bar.end_epoch(stats)
    bar.close()
    assert (bar.progress is not None) is terminal
    assert (stats.line() in caplog.messages) is not terminal
