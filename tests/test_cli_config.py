"""`ferkit train` and `ferkit tune` resolve their config through one merge
(`ferkit.config.resolve_config`: defaults < --config < flags < --set)."""

from __future__ import annotations

from typer.testing import CliRunner

import ferkit.config as config_module
from ferkit.cli import app


class Resolved(Exception):
    """Stops a command right after its config is resolved (nothing is trained)."""


def test_train_and_tune_resolve_their_config_in_one_place(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\nseed: 3\nbatch_size: 32\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 2\nseed: 8\n")
    seen = []
    real = config_module.resolve_config

    def spy(*args):
        seen.append(real(*args))
        raise Resolved

    monkeypatch.setattr(config_module, "resolve_config", spy)
    given = ["--config", str(path), "--epochs", "7", "--set", "seed=4"]
    for argv in (
        ["train", *given],
        ["tune", "--study", "s", "--trials", "1", *given],
        ["train", "--resume", "--out", str(run), "--set", "seed=9"],  # the run's own config
    ):
        result = CliRunner().invoke(app, argv)
        assert isinstance(result.exception, Resolved), result.output
    assert [(c.epochs, c.seed, c.batch_size) for c in seen[:2]] == [(7, 4, 32)] * 2
    assert (seen[2].epochs, seen[2].seed, seen[2].out) == (2, 9, str(run))
