"""`ferkit studies list` and `ferkit studies run`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import HELP_MARKUP, app
from ferkit.paths import DEFAULT_STORE

studies_app = typer.Typer(
    help="The original FER-2013 studies as presets (configs/studies), measured side by side.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)

app.add_typer(studies_app, name="studies")


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    from ferkit.errors import ConfigError

    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{option} expects NAME=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


@studies_app.command("list")
def studies_list(
    presets: Annotated[Path | None, typer.Option(help="preset folder")] = None,
) -> None:
    """List the study presets with what each original reported."""
    from rich.console import Console
    from rich.table import Table

    from ferkit.studies import load_presets

    table = Table(title="study presets")
    for column in ("#", "name", "title", "kind", "epochs", "reported by the original"):
        table.add_column(column)
    for study in load_presets(presets).values():
        epochs = str(study.train.epochs) if study.train else "—"
        reported = "; ".join(r.text() for r in study.reported) or "no number given"
        table.add_row(study.number, study.name, study.title, study.kind, epochs, reported)
    Console().print(table)


@studies_app.command("run")
def studies_run(
    names: Annotated[list[str] | None, typer.Argument(help="studies to run (default: all)")] = None,
    data: Annotated[Path, typer.Option(help="HDF5 store")] = DEFAULT_STORE,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/studies"),
    budget: Annotated[
        float, typer.Option(help="fraction of each preset's training (epochs × images), (0, 1]")
    ] = 1.0,
    budget_of: Annotated[
        list[str] | None, typer.Option(help="NAME=F: another budget for one study (repeatable)")
    ] = None,
    subset: Annotated[int, typer.Option(help="train on a stratified subset (0: all)")] = 0,
    weights: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=FILE local ImageNet weights, e.g. vgg16=vgg16.pth (repeatable)"),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="key=value for every training config")
    ] = None,
    presets: Annotated[Path | None, typer.Option(help="preset folder")] = None,
    clip: Annotated[
        list[Path] | None,
        typer.Option(help="a video of yours for study 2, next to its generated one (repeatable)"),
    ] = None,
) -> None:
    """Train, evaluate (PublicTest and PrivateTest) and tabulate the studies → OUT/studies.md.

    Finished studies with the same settings are reused, and an interrupted training
    resumes, so running the command again continues a killed run.
    """
    import logging

    from ferkit.studies import run_studies

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    budgets = {k: float(v) for k, v in _pairs(budget_of, "--budget-of").items()}
    result = run_studies(
        names, data=data, out=out, budget=budget, budgets=budgets, subset=subset,
        overrides=overrides or [], weights=_pairs(weights, "--weights"), presets=presets,
        command="ferkit " + " ".join(sys.argv[1:]), clips=clip,
    )  # fmt: skip
    if result.reused:
        typer.echo(f"reused finished studies: {', '.join(result.reused)}")
    typer.echo(f"wrote {result.table}" + (f" and {result.plot}" if result.plot else ""))
