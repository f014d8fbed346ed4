"""Self-describing checkpoints: a file that rebuilds its own model with no other file.

A checkpoint holds the architecture name and options, the class names, the preprocessing
the model was trained with, the training config, epoch and metrics, and the weights.

- `.pt` (training runs): `torch.save` of a plain dict, read back with `weights_only=True`
  (no arbitrary pickles). It may carry `train_state` (optimizer, scheduler, scaler and RNG
  states) for resuming; that must be tensors and plain containers only — e.g. store numpy's
  RNG state as a tensor or list — or `weights_only` loading will refuse the file.
- `.safetensors` (shipped weights): the tensors, with every metadata field as a JSON string
  in the safetensors header; never train_state.

Both are written to a temporary file and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from ferkit.errors import ModelError
from ferkit.files import atomic_path
from ferkit.labels import EMOTIONS
from ferkit.models.registry import create_model, list_models
from ferkit.paths import BEST, SHIPPED_BEST
from ferkit.preprocess import Preprocessing

FORMAT = "ferkit-checkpoint"
VERSION = 1
_TORCH_SUFFIXES = (".pt", ".pth")
_META_FIELDS = ("arch", "arch_kwargs", "class_names", "preprocessing", "config", "epoch", "metrics")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass
class Checkpoint:
    """Everything a checkpoint file holds. `load_model` attaches a copy without the
    weights and train_state to the model it returns, as `model.ferkit`."""

    arch: str
    arch_kwargs: dict = field(default_factory=dict)
    class_names: tuple[str, ...] = EMOTIONS
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    config: dict | None = None
    epoch: int | None = None
    metrics: dict | None = None
    state_dict: dict[str, Tensor] | None = field(default=None, repr=False)
    train_state: dict | None = field(default=None, repr=False)
    path: Path | None = None

    def metadata(self) -> dict:
        """The JSON-safe description of the model (no weights, no train_state)."""
        meta = {name: getattr(self, name) for name in _META_FIELDS}
        meta["class_names"] = list(self.class_names)
        meta["preprocessing"] = self.preprocessing.to_dict()
        return meta

    def without_state(self) -> Checkpoint:
        return replace(self, state_dict=None, train_state=None)

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The ready-to-use model in eval mode on `device`, described by `model.ferkit`."""
        model = self.build().to(device).eval()
        model.ferkit = self.without_state()
        return model

    def save(self, path: str | Path, *, half: bool = False) -> Path:
        """Write this checkpoint (weights, description, metrics) to `path` through
        `save_checkpoint`; train_state goes along into a .pt, never into .safetensors."""
        keep_state = Path(path).suffix.lower() != ".safetensors"
        return save_checkpoint(
            path, self.build(), arch=self.arch, arch_kwargs=self.arch_kwargs,
            preprocessing=self.preprocessing, class_names=self.class_names,
            config=self.config, epoch=self.epoch, metrics=self.metrics,
            train_state=self.train_state if keep_state else None, half=half,
        )  # fmt: skip

    def build(self) -> nn.Module:
        """The model with these weights, on the CPU, in train mode.

        `pretrained` is dropped from the options: the saved weights replace it, and the
        ImageNet file it named need not exist where the checkpoint is loaded.
        """
        kwargs = {k: v for k, v in self.arch_kwargs.items() if k != "pretrained"}
        kwargs.setdefault("num_classes", len(self.class_names))
        try:
            model = create_model(self.arch, **kwargs)
            model.load_state_dict(self.state_dict or {})
        except (ModelError, RuntimeError) as error:
            detail = str(error).strip().splitlines()[0]
            raise ModelError(f"{self.path}: cannot rebuild {self.arch!r}: {detail}") from error
        return model


def weights_dir() -> Path:
    """Folder of the weights shipped inside the package (`<name>.safetensors`)."""
    return Path(__file__).resolve().parent.parent / "weights"


ENSEMBLE_SUFFIX = ".ensemble.json"
ENSEMBLE_FORMAT = "ferkit-ensemble"  # the "format" of an ensemble file


def shipped_models() -> list[str]:
    """Names of the shipped models: single networks (`load_model(name)`) and ensembles
    (`weights/<name>.ensemble.json`, usable wherever a classifier is)."""
    singles = [path.stem for path in weights_dir().glob("*.safetensors")]
    return sorted(singles + shipped_ensembles())


def shipped_ensembles() -> list[str]:
    return sorted(
        p.name[: -len(ENSEMBLE_SUFFIX)] for p in weights_dir().glob("*" + ENSEMBLE_SUFFIX)
    )


def resolve_ensemble(spec: str | Path) -> Path | None:
    """The ensemble file `spec` names (a `*.ensemble.json` path or a shipped ensemble's
    name, aliases followed), or None when it names something else."""
    if str(spec).endswith(ENSEMBLE_SUFFIX):
        if not Path(spec).is_file():
            raise ModelError(f"ensemble file not found: {spec}")
        return Path(spec)
    if isinstance(spec, str) and spec == Path(spec).name and not Path(spec).exists():
        path = weights_dir() / f"{shipped_aliases().get(spec, spec)}{ENSEMBLE_SUFFIX}"
        return path if path.is_file() else None
    return None


def read_ensemble(path: Path) -> dict:
    """An ensemble file's members (shipped names, or paths relative to the file) and
    temperature: `{"format": "ferkit-ensemble", "members": [...], "temperature": T}`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: not a readable ensemble file ({error})") from error
    members = data.get("members") if isinstance(data, dict) else None
    if data.get("format") != ENSEMBLE_FORMAT or not members or not isinstance(members, list):
        raise ModelError(f"{path}: not a ferkit ensemble file (format + members expected)")
    folder = Path(path).parent
    # A bare name is a shipped model; anything else a path relative to the ensemble file.
    resolved = [m if Path(m).name == m and not Path(m).suffix else str(folder / m)
                for m in map(str, members)]  # fmt: skip
    return {"members": resolved, "temperature": data.get("temperature")}


def shipped_aliases() -> dict[str, str]:
    """Names that point at another shipped model (`weights/aliases.json`), e.g. `default`
    → `fast` while the small model is the most accurate one trained so far."""
    path = weights_dir() / "aliases.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def clean_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU copy of a state dict with DDP/compile wrapper prefixes removed from the keys."""
    cleaned = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value.detach().to("cpu").contiguous()
    return cleaned


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _jsonable(value):
    """Plain JSON containers for metadata (Paths → str, numpy/torch scalars → numbers)."""

    def default(obj):
        if is_dataclass(obj) and not isinstance(obj, type):
            return asdict(obj)
        if hasattr(obj, "item"):
            return obj.item()
        if isinstance(obj, set | frozenset):
            return sorted(obj)
        return str(obj)

    return json.loads(json.dumps(value, default=default))


HALF_MIN_SIZE = 4096


def _half(tensor: Tensor) -> Tensor:
    big_float = tensor.is_floating_point() and tensor.numel() >= HALF_MIN_SIZE
    return tensor.half() if big_float else tensor


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict,
    preprocessing: Preprocessing | dict,
    class_names: Sequence[str] = EMOTIONS,
    config: dict | None = None,
    epoch: int | None = None,
    metrics: dict | None = None,
    train_state: dict | None = None,
    half: bool = False,
) -> Path:
    """Write `model` (unwrapped from DDP / torch.compile) with its description to `path`;
    the suffix picks the format (.pt or .safetensors). Returns the path.

    half: store the large weight tensors (`HALF_MIN_SIZE` elements and up: convolution and
    dense weights, nearly all the bytes) as float16, halving shipped files; the small
    ones, batch-norm statistics among them, stay float32. Loading converts back to
    float32, so a model saved this way is exactly what its card measured (ship measures
    the stored file)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (*_TORCH_SUFFIXES, ".safetensors"):
        raise ModelError(f"{path}: checkpoint suffix must be .pt or .safetensors")
    if arch not in list_models():
        raise ModelError(f"{path}: cannot save unknown architecture {arch!r}")
    if suffix == ".safetensors" and train_state is not None:
        raise ModelError(f"{path}: .safetensors holds no train_state; save resumable runs as .pt")
    if not isinstance(preprocessing, Preprocessing):
        preprocessing = Preprocessing.from_dict(preprocessing)
    checkpoint = Checkpoint(
        arch=arch,
        arch_kwargs=_jsonable(dict(arch_kwargs)),
        class_names=tuple(class_names),
        preprocessing=preprocessing,
        config=_jsonable(config),
        epoch=None if epoch is None else int(epoch),
        metrics=_jsonable(metrics),
        state_dict=clean_state_dict(_unwrap(model).state_dict()),
        train_state=train_state,
    )
    if half:
        checkpoint.state_dict = {k: _half(v) for k, v in checkpoint.state_dict.items()}
    if suffix == ".safetensors":
        from safetensors.torch import save

        header = {name: json.dumps(value) for name, value in checkpoint.metadata().items()}
        header.update(format=FORMAT, version=str(VERSION))
        # written through open() rather than save_file(), which makes owner-only (0600) files:
        # shipped weights must be readable by whoever the umask lets read the folder
        with atomic_path(path) as tmp:
            tmp.write_bytes(save(checkpoint.state_dict, header))
    else:
        payload = {"format": FORMAT, "version": VERSION, **checkpoint.metadata()}
        payload.update(state_dict=checkpoint.state_dict, train_state=train_state)
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _read_torch(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle means the file is unusable
        raise ModelError(f"{path}: not a readable checkpoint ({_first_line(error)})") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelError(f"{path}: not a ferkit checkpoint (a bare state_dict or another tool's?)")
    return data


def _read_safetensors(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # a corrupt header or truncated data
        raise ModelError(
            f"{path}: not a readable safetensors file ({_first_line(error)})"
        ) from error
    if header.get("format") != FORMAT:
        raise ModelError(f"{path}: safetensors file without ferkit metadata (not a ferkit model)")
    try:
        data = {name: json.loads(header[name]) for name in _META_FIELDS if name in header}
        version = int(header.get("version", ""))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise ModelError(f"{path}: corrupt metadata ({_first_line(error)})") from error
    return {**data, "version": version, "state_dict": state}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a .pt or .safetensors checkpoint; anything unusable raises ModelError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix in _TORCH_SUFFIXES:
        data = _read_torch(path)
    elif suffix == ".safetensors":
        data = _read_safetensors(path)
    else:
        raise ModelError(
            f"{path}: unknown checkpoint type {suffix!r}; expected .pt or .safetensors"
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelError(
            f"{path}: checkpoint format version {version!r}; this ferkit reads up to {VERSION}"
        )
    if not isinstance(data.get("arch"), str) or not isinstance(data.get("state_dict"), dict):
        raise ModelError(f"{path}: checkpoint lacks its architecture name or weights")
    return Checkpoint(
        arch=data["arch"],
        arch_kwargs=dict(data.get("arch_kwargs") or {}),
        class_names=tuple(data.get("class_names") or EMOTIONS),
        preprocessing=Preprocessing.from_dict(data.get("preprocessing") or {}),
        config=data.get("config"),
        epoch=data.get("epoch"),
        metrics=data.get("metrics"),
        state_dict=data["state_dict"],
        train_state=data.get("train_state"),
        path=path,
    )


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """A checkpoint file from a file path, a run folder (its best.pt, else best.safetensors)
    or the bare name of a shipped model (`weights/<name>.safetensors`)."""
    path = Path(path_or_name)
    if path.is_dir():
        for name in (BEST, SHIPPED_BEST):
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path}: run folder without {BEST} or {SHIPPED_BEST}")
    if path.is_file():
        return path
    if isinstance(path_or_name, str) and path_or_name == path.name and not path.suffix:
        if resolve_ensemble(path_or_name) is not None:
            raise ModelError(
                f"{path_or_name!r} is an ensemble of several networks, not one checkpoint: "
                "use it through Recognizer, predict, evaluate or serve"
            )
        name = shipped_aliases().get(path_or_name, path_or_name)
        shipped = weights_dir() / f"{name}.safetensors"
        if shipped.is_file():
            return shipped
        names = ", ".join(shipped_models() + sorted(shipped_aliases())) or "none yet"
        raise ModelError(
            f"no checkpoint file or shipped model named {path_or_name!r}; shipped models: {names}"
        )
    raise ModelError(f"checkpoint not found: {path}")


def load_model(path_or_name: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A ready-to-use model in eval mode from a checkpoint file, run folder or shipped name.

    The model carries its description as `model.ferkit` (a Checkpoint without weights):
    arch, class_names, preprocessing, metrics, ...
    """
    return load_checkpoint(resolve_checkpoint(path_or_name)).model(device)
