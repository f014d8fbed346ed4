"""The models under evaluation ("members") and their ensemble.

`load_member` turns what the user typed — a run folder, a checkpoint (.pt/.safetensors),
an ONNX file or a shipped model name — into a `Member`: a `Classifier` (the recognition
pipeline's backend seam, so a model is evaluated exactly as it later runs) plus what the
report needs to say about it. An ensemble averages its members' probabilities; each member
is reported on its own beside it, so the gain of the ensemble is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.errors import ModelError
from ferkit.evaluate.calibration import checkpoint_temperature
from ferkit.infer.backends import Classifier
from ferkit.infer.loading import network_backend, open_classifier
from ferkit.paths import BEST, LAST

_RUN_FILE_STEMS = (Path(BEST).stem, Path(LAST).stem)  # a run's files, named "<run>/best"


@dataclass
class Member:
    """One model of an evaluation.

    `checkpoint` is the file a PyTorch member was loaded from (None for other backends);
    `run_dir` is the run folder when the user named one (the report is written there).
    """

    name: str
    spec: str
    classifier: Classifier
    checkpoint: Path | None = None
    run_dir: Path | None = None

    @property
    def model(self):
        """The PyTorch module, or None for a member that runs on another backend."""
        return getattr(self.classifier, "model", None)

    @property
    def meta(self):
        """The checkpoint description (`model.ferkit`), or None."""
        return getattr(self.model, "ferkit", None)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.classifier.class_names)

    @property
    def size(self) -> int:
        return int(self.classifier.preprocessing.size)

    @property
    def temperature(self) -> float | None:
        return checkpoint_temperature(self.meta.metrics) if self.meta is not None else None

    def describe(self) -> dict:
        """JSON-safe facts about the member for report.json."""
        facts = {
            "name": self.name,
            "model": self.spec,
            "backend": type(self.classifier).__name__,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "class_names": list(self.class_names),
            "preprocessing": self.classifier.preprocessing.to_dict(),
        }
        if self.model is not None:
            facts["params"] = int(sum(p.numel() for p in self.model.parameters()))
        meta = self.meta
        if meta is not None:
            config = meta.config or {}
            facts.update(
                arch=meta.arch,
                arch_kwargs=meta.arch_kwargs,
                epoch=meta.epoch,
                training_metrics=meta.metrics,
                selected_on=(config.get("data") or {}).get("val_split"),
            )
        return facts


def _member_name(spec: str) -> str:
    path = Path(spec)
    if path.is_dir():
        return path.resolve().name
    if path.is_file():
        if path.stem in _RUN_FILE_STEMS:
            return f"{path.resolve().parent.name}/{path.stem}"
        return path.stem
    return spec


def load_member(spec: str | Path, device: str = "cpu", batch_size: int = 256) -> Member:
    """A member from a run folder, checkpoint, ONNX file or shipped model name: its network
    itself (never an export in its place), raw (evaluation applies TTA and T itself)."""
    spec = str(spec)
    classifier = open_classifier(
        spec, device=device, backend=network_backend(spec), batch_size=batch_size,
        calibrated=False, tta=False,
    )  # fmt: skip
    meta = getattr(getattr(classifier, "model", None), "ferkit", None)
    path = Path(spec)
    return Member(
        name=_member_name(spec),
        spec=spec,
        classifier=classifier,
        checkpoint=Path(meta.path) if meta is not None and meta.path else None,
        run_dir=path if path.is_dir() else None,
    )


def load_members(specs: Sequence[str | Path], device: str = "cpu", batch_size: int = 256):
    """Members for every spec, with unique names, checked to agree with each other."""
    if not specs:
        raise ModelError("no model given to evaluate")
    members = [load_member(spec, device, batch_size) for spec in specs]
    seen: dict[str, int] = {}
    for member in members:
        count = seen.get(member.name, 0)
        seen[member.name] = count + 1
        if count:
            member.name = f"{member.name}#{count + 1}"
    check_compatible(members)
    return members


def check_compatible(
    members: Sequence[Member],
    class_names: Sequence[str] | None = None,
    size: int | None = None,
    where: str = "",
) -> None:
    """Every member must predict the same classes (and those of the data, if given) and take
    the same input size (that of the data, if given); otherwise raise ModelError."""
    first = members[0]
    expected_names = tuple(class_names) if class_names is not None else first.class_names
    expected_size = size if size is not None else first.size
    source = where or first.spec
    for member in members:
        if member.class_names != expected_names:
            raise ModelError(
                f"{member.spec} predicts classes {', '.join(member.class_names)} but "
                f"{source} has {', '.join(expected_names)}"
            )
        if member.size != expected_size:
            raise ModelError(
                f"{member.spec} takes {member.size}×{member.size} faces but {source} has "
                f"{expected_size}×{expected_size}"
            )


def ensemble_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the members' probabilities (an ensemble of one is its member)."""
    if not probs:
        raise ValueError("an ensemble needs at least one member")
    return np.mean(np.stack([np.asarray(p, dtype=np.float32) for p in probs]), axis=0)
