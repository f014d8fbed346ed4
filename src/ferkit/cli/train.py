"""`ferkit models`, `ferkit train` and `ferkit tune`: both training commands resolve
their config through `ferkit.config.resolve_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import app


@app.command("models")
def models_list() -> None:
    """The model zoo: each registered model's parameters and MFLOPs per 48×48 image."""
    from rich.console import Console
    from rich.table import Table

    from ferkit.models.registry import list_models, model_summary

    table = Table(
        title="ferkit models",
        caption="default options, 7 classes, 1×48×48 input; FLOPs count convolutions and "
        "matrix products, 2 per multiply-add",
    )
    table.add_column("name")
    table.add_column("parameters", justify="right")
    table.add_column("MFLOPs", justify="right")
    for name in list_models():
        summary = model_summary(name)
        table.add_row(name, f"{summary['params']:,}", f"{summary['flops'] / 1e6:,.1f}")
    Console().print(table)


@app.command("train")
def train_command(
    model: Annotated[str | None, typer.Option(help="model name (see `ferkit models`)")] = None,
    data: Annotated[Path | None, typer.Option(help="HDF5 store (ferkit data prepare)")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder, e.g. runs/vgg1")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML config (e.g. a run's config.yaml); flags override it")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="number of epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size per process")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    subset: Annotated[int | None, typer.Option(help="train on a stratified subset")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    amp: Annotated[str | None, typer.Option(help="auto | bf16 | fp16 | off")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="key=value (repeatable), e.g. --set optim.name=adamw"),
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from last.pt")] = False,
    overwrite: Annotated[bool, typer.Option(help="start afresh in a used --out")] = False,
) -> None:
    """Train a model; writes config.yaml, metrics.csv, curves.png, best.pt, last.pt.

    Precedence: defaults < --config < flags < --set. `--resume` without --config reuses
    the run folder's config.yaml. Under `torchrun --nproc_per_node N -m ferkit train ...`
    every process trains its shard (DDP) and rank 0 writes the run folder.
    """
    import logging
    import os

    from ferkit.config import resolve_config
    from ferkit.paths import CONFIG_YAML
    from ferkit.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if config is None and resume and out is not None and (out / CONFIG_YAML).exists():
        config = out / CONFIG_YAML
    flags = {
        "model.name": model, "data.path": data, "out": out, "epochs": epochs,
        "batch_size": batch_size, "optim.lr": lr, "data.subset": subset, "device": device,
        "amp": amp, "seed": seed,
    }  # fmt: skip
    resolved = resolve_config(config, flags, overrides)
    result = train(resolved, resume=resume, overwrite=overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(
            f"best val accuracy {result.best_val_acc:.2%} at epoch {result.best_epoch} "
            f"({result.epochs} epochs{', stopped early' if result.stopped_early else ''}); "
            f"run folder {result.run_dir}"
        )


@app.command("tune")
def tune_command(
    study: Annotated[str, typer.Option(help="study name; the same name continues the study")],
    trials: Annotated[int, typer.Option(help="total finished trials the study should reach")],
    data: Annotated[Path | None, typer.Option(help="HDF5 store (ferkit data prepare)")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL shared by workers, e.g. postgresql://u:p@host/db "
            "(default: sqlite in --out)"
        ),
    ] = None,
    space: Annotated[Path | None, typer.Option(help="YAML that narrows/widens the space")] = None,
    timeout: Annotated[float | None, typer.Option(help="start no trial after S seconds")] = None,
    out: Annotated[Path | None, typer.Option(help="folder (default runs/tune/STUDY)")] = None,
    sampler: Annotated[str, typer.Option(help="tpe | random | cmaes")] = "tpe",
    pruner: Annotated[str, typer.Option(help="hyperband | median | none")] = "hyperband",
    seed: Annotated[int | None, typer.Option(help="seed of the sampler and of training")] = None,
    baseline: Annotated[
        bool, typer.Option(help="a new study's first trial trains the base config unchanged")
    ] = True,
    heartbeat: Annotated[int, typer.Option(help="seconds between a worker's heartbeats")] = 60,
    top: Annotated[int, typer.Option(help="rows of the summary table")] = 10,
    plots: Annotated[bool, typer.Option(help="draw the study's plots at the end")] = True,
    config: Annotated[Path | None, typer.Option(help="base YAML config for every trial")] = None,
    model: Annotated[str | None, typer.Option(help="model name (see `ferkit models`)")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs per trial")] = None,
    subset: Annotated[int | None, typer.Option(help="train on a stratified subset")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size (if not searched)")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    amp: Annotated[str | None, typer.Option(help="auto | bf16 | fp16 | off")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value for every trial (repeatable)")
    ] = None,
) -> None:
    """Search hyperparameters with Optuna; run it again, or on more machines, to continue.

    Every trial trains the base config (defaults < --config < flags < --set) with sampled
    overrides and is pruned on its val accuracy per epoch. Writes best.yaml (use it with
    `ferkit train --config`), trials.csv, summary.md and plots/ to --out. The storage also
    works with optuna-dashboard.
    """
    import logging

    from rich.console import Console
    from rich.table import Table

    from ferkit.config import resolve_config
    from ferkit.tune import load_space, tune

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # plots of categorical params
    flags = {
        "data.path": data, "model.name": model, "epochs": epochs, "data.subset": subset,
        "batch_size": batch_size, "device": device, "amp": amp,
    }  # fmt: skip
    base = resolve_config(config, flags, overrides)
    result = tune(
        base, study_name=study, trials=trials, storage=storage, space=load_space(space, base),
        out=out, sampler=sampler, pruner=pruner, seed=seed, timeout=timeout,
        heartbeat=heartbeat, baseline=baseline, top=top, plots=plots,
    )  # fmt: skip
    table = Table(title=f"study {result.study_name}: top trials")
    for column in ("rank", "trial", "val acc", "epochs", "seconds", "parameters"):
        table.add_column(column)
    for rank, row in enumerate(result.top, 1):
        params = "baseline (base config)" if row["baseline"] else ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(row["params"].items())
        )  # fmt: skip
        table.add_row(str(rank), str(row["number"]), f"{row['value']:.4f}", str(row["epochs"]),
                      str(row["seconds"]), params)  # fmt: skip
    console = Console()
    console.print(table)
    console.print(", ".join(f"{n} {state}" for state, n in result.counts.items() if n))
    if result.best_value is not None:
        gain = "" if result.baseline_value is None else (
            f" (baseline {result.baseline_value:.4f})"
        )  # fmt: skip
        console.print(f"best: trial {result.best_trial}, val acc {result.best_value:.4f}{gain}")
        console.print(f"train it: ferkit train --config {result.best_config}")
    console.print(f"outputs in {result.out}/; dashboard: optuna-dashboard {result.storage}")
