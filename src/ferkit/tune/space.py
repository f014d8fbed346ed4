"""The search space: one table of entries and one function, `search_space(trial)`, that
samples it into dotted config overrides for `ferkit.config.apply_overrides`.

An entry maps a config key (`optim.lr`, `model.args.act`, `augment.rotate`, ...) to

- `{choices: [...]}`: categorical;
- `{low: a, high: b}` (optional `log: true`, `step: s`): an int or a float range, whichever
  type the config value has, so `batch_size` samples ints and `augment.rotate` floats;
- a plain value: fixed, not searched.

`when: {key: value or [values]}` samples an entry only while that key (sampled before it,
or taken from the base config) has one of those values: scheduler parameters follow the
scheduler. A `model.args.*` entry is sampled only for models that take that option (width
exists for VGG and ResNets, not for mini-Xception). A YAML file (`load_space`) replaces
entries of the default space one by one, adds new ones, or removes one with `null`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferkit.config import TrainConfig, apply_overrides, read_yaml
from ferkit.errors import ConfigError, FerkitError
from ferkit.models.registry import list_models, model_options

DEFAULT_SPACE: dict[str, Any] = {
    "optim.name": {"choices": ["sgd", "adam", "adamw"]},
    "optim.lr": {"low": 1e-4, "high": 0.1, "log": True},
    "optim.weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "batch_size": {"choices": [32, 64, 128, 256]},
    "model.args.act": {"choices": ["relu", "elu", "gelu", "silu", "leaky_relu"]},
    "model.args.dropout": {"low": 0.0, "high": 0.5},
    "model.args.width": {"choices": [0.5, 1.0]},
    "sched.name": {"choices": ["cosine", "onecycle", "plateau"]},
    "sched.warmup_epochs": {"low": 0.0, "high": 2.0, "when": {"sched.name": "cosine"}},
    "sched.pct_start": {"low": 0.1, "high": 0.4, "when": {"sched.name": "onecycle"}},
    "sched.factor": {"low": 0.1, "high": 0.7, "when": {"sched.name": "plateau"}},
    "sched.patience": {"low": 1, "high": 4, "when": {"sched.name": "plateau"}},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "augment.rotate": {"low": 0.0, "high": 20.0},
    "augment.zoom": {"low": 0.0, "high": 0.2},
    "augment.shift": {"low": 0.0, "high": 0.15},
    "augment.erase_p": {"low": 0.0, "high": 0.5},
}

_SPEC_KEYS = ("choices", "low", "high", "log", "step", "when")
_MODEL_ARGS = "model.args."


def _current(name: str, values: dict, base: TrainConfig) -> Any:
    """The value `name` has for this trial: sampled already, else the base config's."""
    if name in values:
        return values[name]
    if name.startswith(_MODEL_ARGS):
        option = name.removeprefix(_MODEL_ARGS)
        model = values.get("model.name", base.model.name)
        return base.model.args.get(option, model_options(model).get(option))
    node: Any = base.to_dict()
    for part in name.split("."):
        node = node[part]
    return node


def _applies(name: str, spec: dict, values: dict, base: TrainConfig) -> bool:
    if name.startswith(_MODEL_ARGS):
        model = values.get("model.name", base.model.name)
        if name.removeprefix(_MODEL_ARGS) not in model_options(model):
            return False
    for key, allowed in spec.get("when", {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if _current(key, values, base) not in allowed:
            return False
    return True


def _order(space: dict) -> list[str]:
    """Entries that others depend on (model.name, `when` keys) first, then the rest."""
    roots = {"model.name"}
    for spec in space.values():
        if isinstance(spec, dict):
            roots.update(spec.get("when", {}))
    return sorted(space, key=lambda name: name not in roots)


def search_space(
    trial, space: dict[str, Any] | None = None, base: TrainConfig | None = None
) -> dict[str, Any]:
    """Sample one configuration from `space` (default: `DEFAULT_SPACE`) for an Optuna trial.

    Returns `{dotted config key: value}`; applied to `base` with `apply_overrides` it gives
    the trial's TrainConfig. Optuna parameter names are the config keys themselves.
    """
    space = DEFAULT_SPACE if space is None else space
    base = base or TrainConfig()
    values: dict[str, Any] = {}
    for name in _order(space):
        spec = space[name]
        if not isinstance(spec, dict):
            values[name] = spec
        elif not _applies(name, spec, values, base):
            continue
        elif "choices" in spec:
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif isinstance(_current(name, values, base), int) and not isinstance(spec["low"], float):
            step = spec.get("step", 1)
            log = spec.get("log", False)
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], step=step, log=log)
        else:
            low, high = float(spec["low"]), float(spec["high"])
            step = spec.get("step")
            log = spec.get("log", False)
            values[name] = trial.suggest_float(name, low, high, step=step, log=log)
    return values


def _number(value: Any, where: str) -> int | float:
    """A bound as a number; YAML reads `1e-4` (no dot) as a string, so parse those."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"search space {where} must be a number, got {value!r}")
    return value


def _check_entry(name: str, spec: Any, base: TrainConfig) -> Any:
    """A validated (normalised) entry; raises ConfigError naming the entry."""
    if not isinstance(spec, dict):
        probes = [spec]
    else:
        unknown = sorted(set(spec) - set(_SPEC_KEYS))
        if unknown:
            raise ConfigError(
                f"search space {name}: unknown field(s) {', '.join(unknown)} "
                f"(valid: {', '.join(_SPEC_KEYS)})"
            )
        spec = dict(spec)
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(f"search space {name}: choices must be a non-empty list")
            probes = spec["choices"]
        elif "low" in spec and "high" in spec:
            for key in ("low", "high", "step"):
                if key in spec:
                    spec[key] = _number(spec[key], f"{name}.{key}")
            if spec["low"] > spec["high"] or (spec.get("log") and spec["low"] <= 0):
                raise ConfigError(
                    f"search space {name}: need low <= high (and low > 0 with log), "
                    f"got low={spec['low']}, high={spec['high']}"
                )
            probes = [spec["low"], spec["high"]]
        else:
            raise ConfigError(f"search space {name}: give choices, or low and high")
        when = spec.get("when", {})
        if not isinstance(when, dict):
            raise ConfigError(f"search space {name}: when must map config keys to values")
        for key, allowed in when.items():
            apply_overrides(base, {key: allowed[0] if isinstance(allowed, list) else allowed})
    if name == "model.name":
        for probe in probes:
            model_options(probe)  # unknown model → ModelError with the closest names
    if name.startswith(_MODEL_ARGS):
        option = name.removeprefix(_MODEL_ARGS)
        known = {key for model in list_models() for key in model_options(model)}
        if option not in known:
            raise ConfigError(
                f"search space {name}: no model takes {option!r}; model options: "
                f"{', '.join(sorted(known))}"
            )
    for probe in probes:
        apply_overrides(base, {name: probe})  # unknown key or bad value → ConfigError
    return spec


def validate_space(space: dict[str, Any], base: TrainConfig | None = None) -> dict[str, Any]:
    """`space` with every entry checked against the config and the model zoo."""
    if not isinstance(space, dict):
        raise ConfigError(f"a search space must be a mapping, got {type(space).__name__}")
    base = base or TrainConfig()
    checked = {}
    for name, spec in space.items():
        try:
            checked[name] = _check_entry(str(name), spec, base)
        except FerkitError as error:
            message = str(error)
            prefix = "" if message.startswith("search space") else f"search space {name}: "
            raise ConfigError(prefix + message) from None
    return checked


def load_space(path: str | Path | None, base: TrainConfig | None = None) -> dict[str, Any]:
    """The default space with a YAML file's entries applied (`null` removes one), validated."""
    space = dict(DEFAULT_SPACE)
    if path is not None:
        path = Path(path)
        data = read_yaml(path, "search-space file") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a search space must map config keys to entries")
        for name, spec in data.items():
            if spec is None:
                space.pop(name, None)
            else:
                space[name] = spec
    try:
        return validate_space(space, base)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path else str(error)) from None
