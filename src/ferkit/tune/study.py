"""Run an Optuna study of training runs: storage, sampler, pruner, objective, worker loop.

`trials` is the study's total, shared by every worker: a worker keeps starting trials
while fewer than `trials` are finished or running, so running the command again (or on
another machine against the same storage) continues the study where it stands. A
heartbeat marks the trial of a killed worker as failed once `grace` seconds pass without
a beat; `RetryHeartbeatStaleTrialCallback` re-queues it with the same parameters, and the
retry resumes from the failed trial's `last.pt` when this worker can see that folder. A trial
stopped with Ctrl-C is re-queued the same way, so the next run continues it.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ferkit.config import TrainConfig, apply_overrides
from ferkit.errors import ConfigError, DataError
from ferkit.paths import LAST
from ferkit.tune.outputs import TuneResult, redact, write_outputs
from ferkit.tune.space import DEFAULT_SPACE, search_space, validate_space

logger = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("hyperband", "median", "none")
MAX_RETRY = 2  # a trial that kills its worker every time is given up after this many retries


def _retry() -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a dead trial with its parameters and the epochs it reported."""
    return RetryHeartbeatStaleTrialCallback(MAX_RETRY, inherit_intermediate_values=True)


def _unknown(what: str, name: str, known: tuple[str, ...]) -> ConfigError:
    return ConfigError(f"unknown {what} {name!r}; expected one of {', '.join(known)}")


def make_sampler(name: str, seed: int | None, trials: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, aware of conditional entries), random, or CMA-ES.

    Model-based samplers start after a third of the budget (2 to 10 trials) of random
    trials; Optuna's fixed 10 would leave a small study all random.
    """
    startup = max(2, min(10, trials // 3))
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, group=True
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":  # CMA-ES handles numbers; categorical entries go to TPE
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=startup,
            independent_sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
            warn_independent_sampling=False,
        )
    raise _unknown("sampler", name, SAMPLERS)


def make_pruner(name: str, epochs: int, trials: int) -> optuna.pruners.BasePruner:
    """Hyperband over epochs 1..epochs, the median rule, or no pruning."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, trials // 4)))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise _unknown("pruner", name, PRUNERS)


def open_storage(url: str, heartbeat: int, grace: int | None = None) -> RDBStorage:
    """An Optuna RDB storage with heartbeat and retry of failed trials.

    Workers started together race to create the tables of a fresh database; the losers'
    CREATE fails on a unique constraint, and a second look finds the tables made.
    """
    import sqlalchemy

    engine = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(1, 4):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat,
                grace_period=grace,
                heartbeat_stale_trial_callback=_retry(),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == 3:
                raise ConfigError(f"cannot create the tables in {redact(url)}: {error}") from None
            time.sleep(random.uniform(0.2, 1.0) * attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            reason = str(error.__cause__ or error).strip().splitlines()[0]  # e.g. no driver
            raise ConfigError(f"cannot open study storage {redact(url)}: {reason}") from None


class Objective:
    """Train one trial's configuration in `<folder>/<number>`; value = best val accuracy."""

    def __init__(self, base: TrainConfig, space: dict[str, Any], folder: Path):
        self.base, self.space, self.folder = base, space, folder
        self.current: int | None = None  # the trial this worker is running

    def __call__(self, trial: optuna.Trial) -> float:
        from ferkit.train.trainer import TrainingDiverged, train

        self.current = trial.number
        baseline = bool(trial.user_attrs.get("baseline"))
        overrides = {} if baseline else search_space(trial, self.space, self.base)
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        run_dir = self.folder / f"{trial.number:04d}"
        resume = self._take_over(trial, run_dir)
        config = apply_overrides(
            self.base, {**overrides, "out": str(run_dir), "log.progress": False}
        )
        pruned_at: list[int] = []

        def report(stats) -> bool:
            trial.report(stats.val_acc, stats.epoch)
            if stats.epoch < config.epochs and trial.should_prune():  # the last one is free
                pruned_at.append(stats.epoch)
                return True  # the trainer stops after this epoch
            return False

        try:
            result = train(config, resume=resume, overwrite=not resume, on_epoch=report)
        except TrainingDiverged as error:  # a bad recipe, not a broken study: prune it
            trial.set_user_attr("diverged", str(error))
            raise optuna.TrialPruned(str(error)) from None
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("best_epoch", result.best_epoch)
        if pruned_at:
            last = result.history[-1].val_acc
            raise optuna.TrialPruned(f"val acc {last:.4f} at epoch {pruned_at[0]}")
        return result.best_val_acc

    def _take_over(self, trial: optuna.Trial, run_dir: Path) -> bool:
        """For a retried trial, copy the failed attempt's run folder; True if it can resume."""
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        history = RetryHeartbeatStaleTrialCallback.retry_history(frozen)
        previous = self.folder / f"{history[-1]:04d}" if history else None
        if previous is None or not (previous / LAST).exists():
            return False
        if run_dir.exists():
            shutil.rmtree(run_dir)
        shutil.copytree(previous, run_dir)
        logger.info("trial %d resumes trial %d from %s", trial.number, history[-1], previous)
        return True


def _progress(study: optuna.Study) -> Counter:
    optuna.storages.fail_stale_trials(study)  # dead workers' trials → failed and re-queued
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def tune(
    base: TrainConfig,
    *,
    study_name: str,
    trials: int,
    storage: str | None = None,
    space: dict[str, Any] | None = None,
    out: str | Path | None = None,
    sampler: str = "tpe",
    pruner: str = "hyperband",
    seed: int | None = None,
    timeout: float | None = None,
    heartbeat: int = 60,
    grace: int | None = None,
    baseline: bool = True,
    top: int = 10,
    plots: bool = True,
) -> TuneResult:
    """Run (or continue) study `study_name` until it holds `trials` finished trials.

    base: every trial's starting config (data, model, epochs, subset, ...); `space` entries
    override it. storage: SQLAlchemy URL (default `sqlite:///<out>/study.db`). seed: seeds
    the sampler and every trial's training (workers sharing a study need different seeds).
    timeout: no new trial starts after this many seconds. heartbeat/grace: seconds between
    beats, and without one before a trial counts as dead (default 2 × heartbeat).
    plots: draw plots/*.png (one worker of many is enough; the importances take a while).
    """
    if trials < 1:
        raise ConfigError(f"trials must be at least 1, got {trials}")
    for what, name, known in (("sampler", sampler, SAMPLERS), ("pruner", pruner, PRUNERS)):
        if name not in known:  # checked before anything is written
            raise _unknown(what, name, known)
    if not Path(base.data.path).exists():
        raise DataError(f"{base.data.path}: no such data store (run `ferkit data prepare`)")
    out = Path(out) if out is not None else Path("runs/tune") / study_name
    out.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        base = apply_overrides(base, {"seed": seed})
    space = validate_space(DEFAULT_SPACE if space is None else space, base)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study_storage = open_storage(url, heartbeat, grace)
        study_pruner = make_pruner(pruner, base.epochs, trials)
        try:  # exactly one worker creates the study, and only it queues the baseline
            study = optuna.create_study(
                storage=study_storage, study_name=study_name, direction="maximize",
                pruner=study_pruner,
            )  # fmt: skip
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(
                study_name=study_name, storage=study_storage, pruner=study_pruner
            )
            created = False
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ConfigError(f"study {study_name!r} in {redact(url)} minimises; use another name")
        started = len(study.get_trials(deepcopy=False))
        # a resumed study must not replay the sampler's first draws: offset the seed
        study.sampler = make_sampler(sampler, None if seed is None else seed + started, trials)
        if baseline and created:
            study.enqueue_trial({}, user_attrs={"baseline": True})
        logger.info(
            "study %r (%s, %d trials so far) in %s",
            study_name,
            "new" if created else "continued",
            started,
            out,
        )
        _work(study, Objective(base, space, out / "trials"), trials, timeout)
        return write_outputs(study, base, out, url, top, plots)


def _work(study: optuna.Study, objective: Objective, trials: int, timeout: float | None):
    """Start trials until the study has `trials` finished or running ones (or time is up)."""
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            states = _progress(study)
            busy = states[TrialState.COMPLETE] + states[TrialState.PRUNED]
            busy += states[TrialState.RUNNING]
            if busy >= trials and not states[TrialState.WAITING]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                logger.info("timeout: no new trial is started")
                break
            study.optimize(objective, n_trials=1)
    except KeyboardInterrupt:
        number = objective.current
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number == number:
                _retry()(study, trial)
                logger.warning("trial %d interrupted; the next run continues it", number)
        raise
