"""`ferkit evaluate`, `ferkit explain` and `ferkit compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import app
from ferkit.cli.options import (
    Align,
    Detector,
    Equalize,
    EyeCheck,
    TurnedSearch,
    YunetModel,
    face_options,
)
from ferkit.infer.defaults import DETECTOR
from ferkit.paths import DEFAULT_STORE


@app.command("evaluate")
def evaluate_cmd(
    models: Annotated[
        list[str],
        typer.Argument(help="run folders, checkpoints, ONNX files or shipped names (>1: ensemble)"),
    ],
    data: Annotated[Path, typer.Option(help="HDF5 store")] = DEFAULT_STORE,
    split: Annotated[
        str, typer.Option(help="test (PrivateTest, for reporting) | val | train")
    ] = "test",
    labels: Annotated[
        str,
        typer.Option(
            help="fer2013 (the store's labels) | ferplus (FER+ majority labels from the "
            "store's votes; models are scored on the classes they share with them)"
        ),
    ] = "fer2013",
    folder: Annotated[
        Path | None, typer.Option(help="evaluate a labelled folder (class subfolders) instead")
    ] = None,
    detect: Annotated[bool, typer.Option(help="--folder: detect and crop faces")] = True,
    detector: Detector = DETECTOR,
    yunet_model: YunetModel = None,
    eye_check: EyeCheck = False,
    equalize: Equalize = True,
    align: Align = None,
    turned_search: TurnedSearch = None,
    class_map: Annotated[
        list[str] | None, typer.Option(help="--folder: rename a class folder old=new")
    ] = None,
    tta: Annotated[str, typer.Option(help="none | flip | tencrop | flip+tencrop")] = "none",
    out: Annotated[
        Path | None,
        typer.Option(
            help="report folder [default: a given run's folder, else runs/evaluate/MODEL]"
        ),
    ] = None,
    calibrate: Annotated[bool, typer.Option(help="fit a temperature on val")] = True,
    save_temperature: Annotated[
        bool, typer.Option(help="store that temperature in each checkpoint (else it is unchanged)")
    ] = False,
    explain: Annotated[int, typer.Option(help="Grad-CAM for K misclassified faces")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="faces per forward pass")] = 256,
) -> None:
    """Accuracy, per-class P/R/F1, confusion, calibration, TTA and ensembles → report folder.

    --folder images go through the pipeline of `ferkit predict`, with the same face
    options (detector, --yunet-model, --eye-check, --turned-search, --equalize, --align)
    and defaults.
    """
    from rich.console import Console
    from rich.table import Table

    from ferkit.evaluate import evaluate
    from ferkit.labels import parse_class_map

    faces = face_options(detector if detect else "none", yunet_model, eye_check, equalize, align,
                         turned_search)  # fmt: skip
    result = evaluate(
        models, data=data, split=split, labels=labels, folder=folder,
        class_map=parse_class_map(class_map or []),
        tta=tta, out=out, calibrate=calibrate, save_temperature=save_temperature,
        explain=explain, device=device, batch_size=batch_size, **faces,
    )  # fmt: skip
    report = result.report
    table = Table(title=f"{report['protocol']['reported_on']}, TTA {tta}")
    for column in ("model", "accuracy [95% CI]", "macro-F1", "ECE", "ECE after T", "crops/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    entries = [(m["name"], m, f"{m['crops_per_s']:,.0f}") for m in report["members"]]
    if report["ensemble"]:
        entries.append(("ensemble", report["ensemble"], "-"))
    for name, entry, speed in entries:
        m, cal = entry["metrics"], entry["calibration"]
        lo, hi = m["accuracy_ci95"]
        table.add_row(
            name, f"{m['accuracy']:.2%} [{lo:.2%}, {hi:.2%}]", f"{m['macro']['f1']:.2%}",
            f"{m['ece']:.2%}", f"{cal['ece_after']:.2%} (T={cal['temperature']:.2f})"
            if cal else "-", speed,
        )  # fmt: skip
    console = Console()
    console.print(table)
    if report["protocol"].get("scoring"):
        console.print(f"classes: {report['protocol']['scoring']}")
    for warning in report["protocol"]["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
    failures = report["data"].get("failures", {}).get("count", 0)
    if failures:
        console.print(f"[yellow]{failures} unreadable file(s) skipped[/] (listed in report.md)")
    if "face_counts" in report["data"]:
        no_face = report["data"]["no_face"]["count"] / max(report["data"]["n"], 1)
        console.print(report["data"]["face_counts"], style="bold yellow" if no_face else None)
        if no_face >= 0.1:
            console.print(
                f"[bold yellow]warning:[/] {no_face:.0%} of the images had no face and were "
                "classified whole (listed in report.md); if they are face crops already, "
                "use --no-detect"
            )
    console.print(f"report: {result.out / 'report.md'} ({len(result.files)} files)")


@app.command("explain")
def explain_cmd(
    model: Annotated[str, typer.Argument(help="run folder, checkpoint or shipped name")],
    images: Annotated[list[Path], typer.Argument(help="photos or face crops")],
    out: Annotated[Path, typer.Option(help="folder for the heatmaps")] = Path("runs/explain"),
    emotion: Annotated[
        str | None, typer.Option(help="emotion to explain, or 'all' (default: predicted)")
    ] = None,
    detect: Annotated[bool, typer.Option(help="detect faces (off: images are faces)")] = True,
    detector: Detector = DETECTOR,
    yunet_model: YunetModel = None,
    eye_check: EyeCheck = False,
    equalize: Equalize = True,
    align: Align = None,
    turned_search: TurnedSearch = None,
    layer: Annotated[str | None, typer.Option(help="layer to explain (default: last)")] = None,
) -> None:
    """Grad-CAM heatmaps: which face regions drive the predicted (or a chosen) emotion."""
    from ferkit.evaluate import explain_images

    faces = face_options(detector if detect else "none", yunet_model, eye_check, equalize, align,
                         turned_search)  # fmt: skip
    written = explain_images(model, images, out, emotion=emotion, layer=layer, **faces)
    typer.echo("\n".join(f"wrote {path}" for path in written))


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="evaluated run or report folders")],
    out: Annotated[Path, typer.Option(help="folder for compare.md and compare.png")] = Path(
        "runs/compare"
    ),
) -> None:
    """Evaluated runs side by side: params, accuracy, macro-F1, ECE, crops/s; a bar chart."""
    from ferkit.evaluate.compare import compare

    result = compare(runs, out=out)
    typer.echo(result.markdown().rstrip())
    typer.echo("\n".join(f"wrote {path}" for path in result.files))
