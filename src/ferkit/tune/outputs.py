"""What a study leaves in its folder: `best.yaml`, `trials.csv`, `summary.md`, `plots/*.png`.

Every file is rebuilt from the storage after each worker finishes, so any worker (or a
rerun with `--trials` already reached) writes the same view of the whole study. Files are
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ferkit.config import TrainConfig, apply_overrides, save_config
from ferkit.files import atomic_open, atomic_text, save_figure

logger = logging.getLogger(__name__)

# file stem → (Optuna matplotlib plot, drawn per parameter); each needs finished trials
PLOTS = {
    "history": ("plot_optimization_history", False),
    "intermediate": ("plot_intermediate_values", False),
    "importances": ("plot_param_importances", True),
    "parallel_coordinate": ("plot_parallel_coordinate", True),
    "slice": ("plot_slice", True),
}


@dataclass
class TuneResult:
    """The state of a study after this worker's part of it."""

    study_name: str
    storage: str  # URL, password hidden
    out: Path
    counts: dict[str, int]  # trials by state: complete, pruned, fail, running, waiting
    best_trial: int | None
    best_value: float | None  # best val accuracy over the study
    best_params: dict
    baseline_value: float | None  # val accuracy of the unchanged base config, if it ran
    best_config: Path | None  # best.yaml
    top: list[dict]  # rows of the best complete trials, best first
    plots: list[Path]


def redact(url: str) -> str:
    """A storage URL fit to print: the password hidden."""
    import sqlalchemy

    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def trial_row(trial: FrozenTrial) -> dict:
    """One trial as a flat row (the columns of trials.csv and summary.md)."""
    steps = sorted(trial.intermediate_values)
    duration = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "last_val_acc": trial.intermediate_values[steps[-1]] if steps else None,
        "epochs": steps[-1] if steps else 0,
        "seconds": round(duration, 1) if duration is not None else None,
        "baseline": bool(trial.user_attrs.get("baseline")),
        "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(trial),
        "worker": trial.user_attrs.get("worker", ""),
        "params": dict(trial.params),
    }


def write_trials_csv(rows: list[dict], path: Path) -> Path:
    names = sorted({name for row in rows for name in row["params"]})
    columns = [key for key in rows[0] if key != "params"] if rows else ["number"]

    def write(handle):
        writer = csv.writer(handle)
        writer.writerow(columns + names)
        for row in rows:
            writer.writerow([row[c] for c in columns] + [row["params"].get(n) for n in names])

    with atomic_open(path) as handle:
        write(handle)
    return path


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def summary_markdown(study_name: str, counts: dict, top: list[dict], baseline: dict | None):
    """The top trials as a Markdown table, with the baseline for comparison."""
    lines = [
        f"# Study `{study_name}`",
        "",
        "trials: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n),
        "",
    ]
    if baseline is not None:
        lines += [f"baseline (trial {baseline['number']}, the base config unchanged): "
                  f"val acc {baseline['value']:.4f}", ""]  # fmt: skip
    lines += ["| rank | trial | val acc | epochs | seconds | parameters |", "|---" * 6 + "|"]
    for rank, row in enumerate(top, 1):
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(row["params"].items()))
        params = "baseline (base config)" if row["baseline"] else params
        lines.append(
            f"| {rank} | {row['number']} | {row['value']:.4f} | {row['epochs']} | "
            f"{row['seconds']} | {params} |"
        )
    return "\n".join(lines) + "\n"


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """PNG plots via Optuna's matplotlib backend; one that lacks trials is skipped."""
    import numpy as np
    import optuna.visualization.matplotlib as vis

    # per-parameter plots leave out trials without parameters (the baseline)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        searched = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    searched.add_trials([t for t in finished if t.params])
    written = []
    for stem, (name, per_param) in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" notices of the matplotlib backend
            try:
                axes = getattr(vis, name)(searched if per_param else study)
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                logger.info("plot %s skipped: %s", stem, error)
                continue
            figure = np.atleast_1d(axes).flat[0].figure
        if stem == "parallel_coordinate":  # one column per parameter
            figure.set_size_inches(max(8.0, 1.1 * len(figure.axes[0].get_xticks())), 6.0)
        path = folder / f"{stem}.png"
        written.append(save_figure(figure, path, dpi=110, bbox_inches="tight"))
    return written


def write_outputs(
    study: optuna.Study, base: TrainConfig, out: Path, url: str, top: int, plots: bool = True
) -> TuneResult:
    """Write best.yaml, trials.csv, summary.md and (with `plots`) plots/ for the whole study."""
    trials = study.get_trials(deepcopy=False)
    rows = [trial_row(t) for t in trials]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = sorted(
        (r for r in rows if r["state"] == "complete"), key=lambda r: r["value"], reverse=True
    )
    baseline = next((r for r in complete if r["baseline"]), None)
    write_trials_csv(rows, out / "trials.csv")
    summary = summary_markdown(study.study_name, counts, complete[:top], baseline)
    atomic_text(out / "summary.md", summary)
    best_config = best_trial = None
    if complete:
        best_trial = study.best_trial
        overrides = best_trial.user_attrs.get("overrides", best_trial.params)
        config = apply_overrides(base, {**overrides, "out": str(out / "best")})
        best_config = save_config(config, out / "best.yaml")
    else:
        logger.warning("study %r has no complete trial yet: no best.yaml", study.study_name)
    pictures = write_plots(study, out / "plots") if plots and trials else []
    return TuneResult(
        study_name=study.study_name,
        storage=redact(url),
        out=out,
        counts=counts,
        best_trial=best_trial.number if best_trial else None,
        best_value=best_trial.value if best_trial else None,
        best_params=dict(best_trial.params) if best_trial else {},
        baseline_value=baseline["value"] if baseline else None,
        best_config=best_config,
        top=complete[:top],
        plots=pictures,
    )
