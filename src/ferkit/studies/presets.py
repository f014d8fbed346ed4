"""Study presets: one YAML file per original study under `configs/studies/`.

A preset says what the original study did and how ferkit repeats it:

    study:      title, number, source (what the original was), reported (its numbers and
                the split they refer to), differs (what ferkit does differently, and why)
    train:      a `ferkit train` config (the TrainConfig schema; data.path and out are set
                by `ferkit.studies.reproduce`)
    tune:       optional, an Optuna search run before the final training (study 1)
    pretrained: optional, the model whose ImageNet weights the user may pass as a local file
    recognize:  instead of train: recognition settings driven with another study's model

Every key is checked when the preset loads, so a typo fails with a `ConfigError` naming the
file and the key, before anything trains.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferkit.config import TrainConfig, from_dict, read_yaml
from ferkit.errors import ConfigError
from ferkit.infer.defaults import DETECTOR

SECTIONS = ("study", "train", "tune", "pretrained", "recognize")
STUDY_KEYS = ("title", "number", "source", "reported", "differs")
REPORTED_KEYS = ("metric", "value", "split")
TUNE_KEYS = ("trials", "epochs", "min_budget", "sampler", "pruner", "space")
RECOGNIZE_KEYS = ("model_from", "detector", "smoothing", "clip")
SMOOTHING_KEYS = ("method", "window", "alpha")
CLIP_KEYS = ("seconds", "fps", "noise", "exposure")


@dataclass(frozen=True)
class Reported:
    """One number the original study reported: e.g. 'val accuracy', (65, 70), 'their val'."""

    metric: str
    low: float
    high: float
    split: str

    def text(self) -> str:
        value = f"{self.low:g}" if self.low == self.high else f"{self.low:g}–{self.high:g}"
        return f"{self.metric} {value} % ({self.split})"


@dataclass(frozen=True)
class TunePlan:
    """An Optuna search before the final training; skipped below `min_budget`."""

    trials: int
    epochs: int
    min_budget: float
    sampler: str
    pruner: str
    space: dict[str, Any]


@dataclass(frozen=True)
class RecognizePlan:
    """Recognition settings (`ferkit predict`) run with study `model_from`'s trained model."""

    model_from: str
    detector: str
    smoothing: dict[str, Any]
    clip: dict[str, float]


@dataclass(frozen=True)
class Study:
    """A loaded, validated preset."""

    name: str
    path: Path
    title: str
    number: str
    source: str
    reported: tuple[Reported, ...]
    differs: str
    train: TrainConfig | None = None
    tune: TunePlan | None = None
    pretrained: str | None = None
    recognize: RecognizePlan | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return "recognize" if self.recognize is not None else "train"


def default_presets_dir() -> Path:
    """`configs/studies` of the source checkout ferkit runs from, else of the working dir."""
    checkout = Path(__file__).resolve().parents[3] / "configs" / "studies"
    return checkout if checkout.is_dir() else Path("configs") / "studies"


def _check_keys(data: Any, valid: tuple[str, ...], where: str, path: Path) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {where or 'the preset'} must be a mapping, got {data!r}")
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"; did you mean {where + close[0]!r}?" if close else ""
            raise ConfigError(
                f"{path}: unknown key {where + str(key)!r}{hint} (valid: {', '.join(valid)})"
            )
    return data


def _require(data: dict, key: str, kind: type, where: str, path: Path):
    if key not in data:
        raise ConfigError(f"{path}: missing {where}{key}")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{path}: {where}{key} must be {kind.__name__}, got {value!r}")
    return value


def _reported(items: Any, path: Path) -> tuple[Reported, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{path}: study.reported must be a list (may be empty)")
    out = []
    for i, item in enumerate(items):
        where = f"study.reported[{i}]."
        _check_keys(item, REPORTED_KEYS, where, path)
        value = item.get("value")
        values = value if isinstance(value, list) else [value]
        if not 1 <= len(values) <= 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise ConfigError(f"{path}: {where}value must be a percentage or [low, high]")
        metric = _require(item, "metric", str, where, path)
        split = _require(item, "split", str, where, path)
        out.append(Reported(metric, float(min(values)), float(max(values)), split))
    return tuple(out)


def _tune(data: Any, base: TrainConfig, path: Path) -> TunePlan:
    from ferkit.tune.space import validate_space  # imports Optuna only for presets that tune
    from ferkit.tune.study import PRUNERS, SAMPLERS

    _check_keys(data, TUNE_KEYS, "tune.", path)
    sampler, pruner = data.get("sampler", "tpe"), data.get("pruner", "hyperband")
    for what, name, known in (("sampler", sampler, SAMPLERS), ("pruner", pruner, PRUNERS)):
        if name not in known:
            raise ConfigError(f"{path}: tune.{what} {name!r} is not one of {', '.join(known)}")
    try:
        space = validate_space(_require(data, "space", dict, "tune.", path), base)
    except ConfigError as error:
        raise ConfigError(f"{path}: tune.{error}") from None
    return TunePlan(
        trials=_require(data, "trials", int, "tune.", path),
        epochs=_require(data, "epochs", int, "tune.", path),
        min_budget=_require(data, "min_budget", float, "tune.", path),
        sampler=sampler,
        pruner=pruner,
        space=space,
    )


def _recognize(data: Any, path: Path) -> RecognizePlan:
    from ferkit.infer.smoothing import SmoothingConfig

    _check_keys(data, RECOGNIZE_KEYS, "recognize.", path)
    smoothing = _check_keys(data.get("smoothing", {}), SMOOTHING_KEYS, "recognize.smoothing.", path)
    SmoothingConfig(**smoothing)  # bad method / window → ConfigError
    clip = _check_keys(data.get("clip", {}), CLIP_KEYS, "recognize.clip.", path)
    for key, value in clip.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: recognize.clip.{key} must be a number >= 0")
    return RecognizePlan(
        model_from=_require(data, "model_from", str, "recognize.", path),
        detector=data.get("detector", DETECTOR),
        smoothing=dict(smoothing),
        clip={k: float(v) for k, v in clip.items()},
    )


def load_preset(path: str | Path) -> Study:
    """Read and validate one preset file; errors name the file and the key."""
    path = Path(path)
    data = read_yaml(path, "study preset")
    _check_keys(data, SECTIONS, "", path)
    meta = _check_keys(data.get("study"), STUDY_KEYS, "study.", path)
    if ("train" in data) == ("recognize" in data):
        raise ConfigError(f"{path}: a preset has either a train or a recognize section")
    train = tune = recognize = None
    if "train" in data:
        try:
            train = from_dict(data["train"] or {})
        except ConfigError as error:
            raise ConfigError(f"{path}: train: {error}") from None
        if "tune" in data:
            tune = _tune(data["tune"], train, path)
    else:
        recognize = _recognize(data["recognize"], path)
    pretrained = data.get("pretrained")
    if pretrained is not None and (train is None or pretrained != train.model.name):
        raise ConfigError(f"{path}: pretrained must name the preset's model ({pretrained!r})")
    return Study(
        name=path.stem,
        path=path,
        title=_require(meta, "title", str, "study.", path),
        number=_require(meta, "number", str, "study.", path),
        source=_require(meta, "source", str, "study.", path),
        reported=_reported(meta.get("reported", []), path),
        differs=_require(meta, "differs", str, "study.", path),
        train=train,
        tune=tune,
        pretrained=pretrained,
        recognize=recognize,
        raw=data,
    )


def load_presets(folder: str | Path | None = None) -> dict[str, Study]:
    """All presets of a folder (default `default_presets_dir()`), in study-number order."""
    folder = Path(folder) if folder is not None else default_presets_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{folder}: no study presets (*.yaml) found")
    studies = [load_preset(path) for path in files]
    for study in studies:
        if study.recognize and study.recognize.model_from not in {s.name for s in studies}:
            raise ConfigError(
                f"{study.path}: recognize.model_from {study.recognize.model_from!r} is not a "
                f"study in {folder}"
            )
    return {s.name: s for s in sorted(studies, key=lambda s: (s.number, s.name))}


def select(studies: dict[str, Study], names: list[str] | None) -> list[Study]:
    """The named studies (all when none), with the studies they depend on run first."""
    if not names:
        return list(studies.values())
    unknown = [n for n in names if n not in studies]
    if unknown:
        raise ConfigError(
            f"unknown study {', '.join(map(repr, unknown))}; valid names: {', '.join(studies)}"
        )
    wanted = set(names)
    for name in names:
        if studies[name].recognize is not None:
            wanted.add(studies[name].recognize.model_from)
    return [s for s in studies.values() if s.name in wanted]
