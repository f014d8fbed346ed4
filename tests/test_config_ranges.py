"""Every numeric config key has a range, checked at load with the key named: a bad value
fails before a run folder, a config.yaml or a minute of training exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.config import TrainConfig, apply_overrides, load_config
from ferkit.errors import ConfigError

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("optim.lr=-0.01", "optim.lr=-0.01 is out of range: it must lie in (0, inf)"),
        ("label_smoothing=2", "label_smoothing=2.0 is out of range: it must lie in [0, 1)"),
        ("epochs=0", "epochs=0 is out of range: it must lie in [1, inf)"),
        ("batch_size=-4", "batch_size=-4 is out of range"),
        ("optim.lr=.nan", "optim.lr=nan is out of range"),
        ("optim.lr=.inf", "optim.lr=inf is out of range"),
        ("augment.hflip=1.5", "augment.hflip=1.5 is out of range: it must lie in [0, 1]"),
        ("augment.camera_p=-0.1", "augment.camera_p=-0.1 is out of range"),
        ("augment.rotate=-5", "augment.rotate=-5.0 is out of range"),
        ("sched.pct_start=1", "sched.pct_start=1.0 is out of range: it must lie in (0, 1)"),
        ("grad_clip=-1", "grad_clip=-1.0 is out of range: it must lie in [0, inf)"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_range(override, words):
    with pytest.raises(ConfigError) as error:
        apply_overrides(TrainConfig(), [override])
    assert words in str(error.value)


def test_edges_of_the_ranges_are_accepted():
    config = apply_overrides(
        TrainConfig(),
        ["label_smoothing=0", "augment.hflip=1", "augment.vflip=0", "epochs=1", "seed=0"],
    )
    assert config.augment.hflip == 1.0 and config.epochs == 1


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.glob("*.yaml") if p.name != "space.yaml"), ids=str
)
def test_shipped_configs_are_in_range(path):
    load_config(path)


def test_cli_refuses_a_bad_value_before_creating_the_run(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path / "none.h5"), "--out", str(run), "--lr", "-0.01"]
    )
    assert result.exit_code == 1
    assert "optim.lr=-0.01 is out of range" in str(result.exception or result.output)
    assert not run.exists()
