"""Training configs: defaults, YAML round trip, dotted overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferkit.config import (
    AugmentConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    resolve_config,
    save_config,
)
from ferkit.errors import ConfigError


def test_yaml_round_trip_keeps_every_value(tmp_path):
    config = apply_overrides(
        TrainConfig(),
        ["optim.name=adamw", "optim.lr=3e-4", "model.args.width=0.5", "augment.hflip=0"],
    )
    path = save_config(config, tmp_path / "config.yaml")
    assert load_config(path) == config
    assert not list(tmp_path.glob("*.tmp"))


def test_partial_yaml_keeps_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("epochs: 3\noptim:\n  lr: 0.1\nmodel:\n  name: vgg\n  args: {width: 0.25}\n")
    config = load_config(path)
    assert config.epochs == 3 and config.optim.lr == 0.1
    assert config.model.name == "vgg" and config.model.args == {"width": 0.25}
    assert config.optim.name == TrainConfig().optim.name
    assert config.augment == AugmentConfig()


def test_overrides_parse_yaml_scalars():
    config = apply_overrides(
        TrainConfig(), ["epochs=7", "log.progress=false", "sched.name=onecycle", "optim.lr=1"]
    )
    assert config.epochs == 7 and config.log.progress is False
    assert config.sched.name == "onecycle"
    assert isinstance(config.optim.lr, float) and config.optim.lr == 1.0
    # Dict overrides (the CLI flags) and free-form model options.
    config = apply_overrides(config, {"batch_size": 64, "model.args.act": "silu"})
    assert config.batch_size == 64 and config.model.args == {"act": "silu"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["optim.lrr=0.1"], "did you mean 'optim.lr'"),
        (["optm.lr=0.1"], "did you mean 'optim'"),
        (["epoch=3"], "did you mean 'epochs'"),
        (["augment.hflp=0.5"], "did you mean 'augment.hflip'"),
    ],
)
def test_unknown_key_names_the_closest_valid_key(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        apply_overrides(TrainConfig(), overrides)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sched:\n  warmup_epoch: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*did you mean 'sched\.warmup_epochs'"):
        load_config(path)


@pytest.mark.parametrize(
    "data",
    [
        {"amp": "fp8"},
        {"optim": {"name": "lion"}},
        {"epochs": 2.5},
        {"epochs": "many"},
        {"log": {"progress": "yes"}},
        {"optim": 0.1},
    ],
)
def test_bad_values_raise_config_error(data):
    with pytest.raises(ConfigError):
        from_dict(data)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(TrainConfig(), ["epochs"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "broken.yaml").write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


@pytest.mark.parametrize(
    "name",
    ["fast", "vgg", "resnet18", "mini_xception", "default", "default_camera", "fast_distill"],
)
def test_example_recipes_load(name):
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    assert config.model.name in name or name.startswith(("fast", "default"))
    assert config.out == f"runs/{name}"


def test_resolve_config_merges_defaults_file_flags_and_sets_in_that_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\noptim:\n  lr: 0.02\nbatch_size: 32\n")
    assert resolve_config() == TrainConfig()
    from_file = resolve_config(path)
    assert (from_file.epochs, from_file.optim.lr, from_file.seed) == (5, 0.02, TrainConfig().seed)
    flagged = resolve_config(path, {"epochs": 7, "seed": None, "data.path": tmp_path / "s.h5"})
    assert (flagged.epochs, flagged.optim.lr, flagged.batch_size) == (7, 0.02, 32)
    assert flagged.seed == TrainConfig().seed  # a flag left out (None) keeps the file's value
    assert flagged.data.path == str(tmp_path / "s.h5")
    final = resolve_config(path, {"epochs": 7}, ["epochs=9", "optim.lr=0.5"])
    assert (final.epochs, final.optim.lr, final.batch_size) == (9, 0.5, 32)


def test_yaml_on_off_reach_string_choices_as_words():
    """YAML 1.1 reads `off` as False: `--set channels_last=off` must still mean "off"."""
    config = apply_overrides(TrainConfig(), ["channels_last=off", "amp=off"])
    assert (config.channels_last, config.amp) == ("off", "off")
    assert apply_overrides(TrainConfig(), {"channels_last": True}).channels_last == "on"
    with pytest.raises(ConfigError, match="data.labels"):
        apply_overrides(TrainConfig(), ["data.labels=no"])  # "off" is not one of its choices
