"""Training configuration: dataclasses, YAML load/save and dotted overrides.

A run is described by one `TrainConfig`. Values come, in increasing precedence, from the
defaults below, a YAML file (`--config`), the common CLI flags (`--epochs`, `--lr`, ...)
and `--set section.key=value` overrides (`resolve_config`: the one merge train and tune
use). Every key is checked: an unknown one raises
`ConfigError` naming the closest valid key, so a typo never silently trains the wrong
recipe. The resolved config is saved as `config.yaml` in the run folder and loads back
unchanged, which makes any run reproducible from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferkit.errors import ConfigError
from ferkit.paths import DEFAULT_STORE


def _choice(default: str, *others: str):
    """A string field that only takes `default` or one of `others`."""
    return field(default=default, metadata={"choices": (default, *others)})


@dataclass
class ModelConfig:
    """Which network to build; `args` go to `create_model` (e.g. act, dropout, width)."""

    name: str = "seed_cnn"
    args: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """The HDF5 store and what to read from it."""

    path: str = str(DEFAULT_STORE)
    train_split: str = "train"
    val_split: str = "val"
    subset: int = 0  # > 0: a stratified, seeded subset of the training split of this size
    # standardize: (pixel/255 - mean) / std with the store's statistics; unit: pixel/255 in
    # [0, 1] (Keras `rescale=1/255`). Recorded in the checkpoint, so inference follows it.
    scale: str = _choice("standardize", "unit")
    # training targets (ferkit.data.targets): fer2013 = the store's labels; ferplus_majority
    # = FER+ majority labels (unknown/not-a-face left out); ferplus_votes = cross-entropy to
    # the FER+ vote distribution; blend = (1 - label_blend)·FER-2013 + label_blend·votes
    labels: str = _choice("fer2013", "ferplus_majority", "ferplus_votes", "blend")
    label_blend: float = 0.5
    classes: str = _choice("fer7", "ferplus8")  # ferplus8 adds contempt (needs FER+ labels)
    # labels val is scored with (best checkpoint, early stopping); auto: FER+ majority when
    # the targets come from FER+, else FER-2013
    val_labels: str = _choice("auto", "fer2013", "ferplus")


@dataclass
class OptimConfig:
    name: str = _choice("sgd", "adam", "adamw")  # SGD uses Nesterov momentum
    lr: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8  # Adam/AdamW epsilon (Keras uses 1e-7)


@dataclass
class SchedulerConfig:
    name: str = _choice("cosine", "onecycle", "plateau", "step", "constant")  # cosine: with warmup
    warmup_epochs: float = 1.0  # cosine: linear warmup length
    min_lr_ratio: float = 0.01  # cosine: final lr as a fraction of optim.lr
    pct_start: float = 0.25  # onecycle: fraction of steps spent rising
    div_factor: float = 25.0  # onecycle: initial lr = lr / div_factor
    final_div_factor: float = 1e3  # onecycle: final lr = initial lr / final_div_factor
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step: decay factor
    factor: float = 0.5  # plateau: decay factor
    patience: int = 3  # plateau: epochs without val-accuracy gain before decaying


@dataclass
class AugmentConfig:
    """On-device batch augmentation; every strength 0 (or probability 0) turns its op off."""

    crop_padding: int = 4  # random crop after padding by this many pixels
    resized_crop_scale: float = 1.0  # random resized crop: smallest area fraction (1 = off)
    hflip: float = 0.5  # probability
    vflip: float = 0.0  # probability (faces are upright: off by default)
    rotate: float = 10.0  # degrees, uniform in ±rotate
    shift: float = 0.0  # fraction of the image size, uniform in ±shift
    shear: float = 0.0  # degrees
    zoom: float = 0.1  # scale uniform in [1 - zoom, 1 + zoom]
    affine_p: float = 0.5  # probability of the combined rotate/shift/shear/zoom/resized-crop
    erase_p: float = 0.0  # random erasing probability
    erase_max_area: float = 0.25  # largest erased fraction of the image
    brightness: float = 0.0  # additive, fraction of the value range, uniform in ±brightness
    contrast: float = 0.0  # multiplicative around the image mean, uniform in 1 ± contrast
    # camera-like degradation with this probability: lower contrast, brightness shift, gamma,
    # slight blur, sensor noise, 8-bit rounding (live camera faces, unlike FER-2013's)
    camera_p: float = 0.0
    # histogram equalisation with this probability, as the Recognizer applies to live crops
    equalize_p: float = 0.0
    mixup_alpha: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix_alpha: float = 0.0  # Beta(alpha, alpha); 0 = off
    mix_p: float = 1.0  # probability that a batch is mixed (when mixup or cutmix is on)


@dataclass
class DistillConfig:
    """Knowledge distillation (ferkit.train.distill); off while `teacher` is empty."""

    teacher: str = ""  # checkpoint, run folder or shipped name; several comma-separated
    weight: float = 0.5  # share of the teachers' probabilities in the target
    temperature: float = 1.0  # > 1 softens the teachers' probabilities


@dataclass
class LogConfig:
    progress: bool = True  # rich progress bar with live loss, accuracy and images/s
    tensorboard: bool = False  # also write TensorBoard scalars (if tensorboard is installed)


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    out: str = "runs/train"  # run folder: config.yaml, metrics.csv, curves.png, best.pt, last.pt
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU threads for torch (0: torch's default); 1 helps on a busy machine
    epochs: int = 30
    batch_size: int = 128  # per process (DDP: per rank)
    eval_batch_size: int = 512
    # auto: bf16 autocast on CUDA and on CPUs with native bf16 (emulated bf16 is slower)
    amp: str = _choice("auto", "bf16", "fp16", "off")
    # auto: on (NHWC convolutions trained 1.6-1.7x faster on the 2-core AVX2 CPU for vgg,
    # seed_cnn and mini_xception; on CUDA they use the tensor cores)
    channels_last: str = _choice("auto", "on", "off")
    label_smoothing: float = 0.0
    class_weights: str = _choice("none", "balanced", "sqrt")  # loss weights from class counts
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    ema_decay: float = 0.0  # EMA of weights, e.g. 0.999; 0 = off (evaluation uses the EMA)
    # fine-tuning: start from this checkpoint, run folder or shipped name's weights (same
    # architecture); "" = random initialisation
    init: str = ""
    patience: int = 0  # early stopping: epochs without val-accuracy gain; 0 = off
    # val accuracy per epoch (best checkpoint, early stopping) with the test-time augmentation
    # the model will be used with: flip averages the probabilities of the face and its mirror
    val_tta: str = _choice("none", "flip")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedulerConfig = field(default_factory=SchedulerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Numeric ranges, checked at load with the key named, so `--lr -0.01` or
# `label_smoothing=2` fails before a run folder exists. Every number must be finite and
# >= 0; augmentation probabilities (`*_p`, `hflip`, `vflip`) lie in [0, 1]; these are tighter.
RANGES = {
    "epochs": "[1, inf)", "batch_size": "[1, inf)", "eval_batch_size": "[1, inf)",
    "label_smoothing": "[0, 1)", "ema_decay": "[0, 1)", "data.label_blend": "[0, 1]",
    "optim.lr": "(0, inf)", "optim.momentum": "[0, 1)", "optim.beta1": "[0, 1)",
    "optim.beta2": "[0, 1)", "optim.eps": "(0, inf)",
    "sched.min_lr_ratio": "[0, 1]", "sched.pct_start": "(0, 1)", "sched.div_factor": "(0, inf)",
    "sched.final_div_factor": "(0, inf)", "sched.step_size": "[1, inf)",
    "sched.gamma": "(0, 1]", "sched.factor": "(0, 1)",
    "augment.resized_crop_scale": "(0, 1]", "augment.erase_max_area": "[0, 1]",
    "augment.rotate": "[0, 180]", "augment.shear": "[0, 90)", "augment.shift": "[0, 1)",
    "augment.zoom": "[0, 1)", "augment.brightness": "[0, 1]", "augment.contrast": "[0, 1]",
}  # fmt: skip


def _check_range(key: str, value: float) -> None:
    """ConfigError naming `key` when `value` lies outside its range (see RANGES)."""
    name = key.rpartition(".")[2]
    probability = key.startswith("augment.") and (name.endswith("_p") or name in ("hflip", "vflip"))
    spec = RANGES.get(key, "[0, 1]" if probability else "[0, inf)")
    low, high = (float(bound) for bound in spec[1:-1].split(","))
    above = value > low if spec[0] == "(" else value >= low
    below = value < high if spec[-1] == ")" else value <= high
    if not (above and below):
        raise ConfigError(f"config {key}={value!r} is out of range: it must lie in {spec}")


def _closest(key: str, valid: list[str], prefix: str) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {prefix + match[0]!r}?" if match else ""
    return f"unknown config key {prefix + key!r}{hint} (valid: {', '.join(sorted(valid))})"


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check (and gently convert) one value against its dataclass field type."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"config {where} must be a mapping, got {value!r}")
        return _build(kind, value, f"{where}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind in (int, float):
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if kind is float:
                return float(value)
            if float(value).is_integer():
                return int(value)
    elif kind is str:
        if isinstance(value, bool):  # YAML 1.1 reads on/off (yes/no) as booleans
            return "on" if value else "off"
        if isinstance(value, (str, int, float)):
            return str(value)
    elif kind is dict:
        if isinstance(value, dict):
            return dict(value)
    raise ConfigError(f"config {where} must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _build(cls: type, data: dict, prefix: str = ""):
    """Instantiate dataclass `cls` from a (partial) dict, validating every key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(_closest(str(key), list(fields), prefix))
        values[key] = _coerce(value, hints[key], f"{prefix}{key}")
        choices = fields[key].metadata.get("choices")
        if choices and values[key] not in choices:
            raise ConfigError(
                f"config {prefix}{key}={values[key]!r} is not one of {', '.join(choices)}"
            )
        if isinstance(values[key], int | float) and not isinstance(values[key], bool):
            _check_range(f"{prefix}{key}", values[key])
    return cls(**values)


def from_dict(data: dict) -> TrainConfig:
    """A validated TrainConfig from a (partial) nested dict; missing keys keep defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    return _build(TrainConfig, data)


def read_yaml(path: str | Path, what: str = "config file"):
    """The parsed contents of a YAML file; a missing file or broken YAML is a ConfigError
    naming the file (`what` says what kind of file was expected)."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config file (a partial one is fine: missing keys keep defaults)."""
    data = read_yaml(path)
    try:
        return from_dict(data or {})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the config as YAML atomically (temp file + rename)."""
    import yaml

    from ferkit.files import atomic_text

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    return atomic_text(path, text)


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(config: TrainConfig, overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """A new config with dotted overrides applied: ["optim.lr=0.01"] or {"optim.lr": 0.01}.

    String values are parsed as YAML scalars (`0.01` → float, `true` → bool). Keys under
    `model.args.` are free-form (they go to the model); every other key must exist.
    """
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set expects key=value, got {item!r}")
            pairs[key.strip()] = _parse_value(text.strip())
        overrides = pairs
    data = config.to_dict()
    for key, value in overrides.items():
        parts = key.split(".")
        node, prefix = data, ""
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                valid = [k for k, v in node.items() if isinstance(v, dict)]
                raise ConfigError(_closest(part, valid, prefix))
            node, prefix = node[part], f"{prefix}{part}."
        if prefix != "model.args." and parts[-1] not in node:
            raise ConfigError(_closest(parts[-1], list(node), prefix))
        node[parts[-1]] = value
    return from_dict(data)


def resolve_config(
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> TrainConfig:
    """The config a command runs: the defaults < the YAML `config_file` (its missing keys
    keep the defaults) < `flags` (dotted keys; None means the flag was not given) < `sets`
    (`--set key=value` strings). Written once for `ferkit train` and `ferkit tune`."""
    base = load_config(config_file) if config_file is not None else TrainConfig()
    given = {k: str(v) if isinstance(v, Path) else v for k, v in (flags or {}).items()}
    chosen = {k: v for k, v in given.items() if v is not None}
    return apply_overrides(apply_overrides(base, chosen), list(sets or []))
