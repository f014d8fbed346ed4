"""`ferkit export` and `ferkit ship`: a trained model as an ONNX file or as shipped weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import app
from ferkit.paths import DEFAULT_STORE


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="run folder, checkpoint or shipped model name")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (the only format)")] = "onnx",
    int8: Annotated[
        bool,
        typer.Option(
            help="static int8, calibrated on training images (--data or the model's store); "
            "fails without them (--int8-method dynamic: weights only, slower on CPU)"
        ),
    ] = False,
    int8_method: Annotated[
        str | None, typer.Option(help="static | dynamic (implies --int8)")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
    out: Annotated[
        Path | None, typer.Option(help="output file (default: beside the checkpoint)")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="HDF5 store: test split checks parity, train split calibrates int8 "
            f"(default: the model's own store, else {DEFAULT_STORE})"
        ),
    ] = None,
    check_samples: Annotated[
        int, typer.Option(help="test faces compared with PyTorch (0: the whole split)")
    ] = 1000,
    tolerance: Annotated[float, typer.Option(help="fp32: largest |Δprobability| allowed")] = 1e-4,
) -> None:
    """Export a model to ONNX (uint8 48×48 faces in, probabilities out), checked against PyTorch."""
    from ferkit.errors import ConfigError

    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}; only onnx is supported")
    from ferkit.export import export_onnx

    report = export_onnx(
        model, out, int8=int8_method or ("static" if int8 else False), opset=opset, data=data,
        check_samples=check_samples or None, tolerance=tolerance,
    )  # fmt: skip
    typer.echo(report.summary())


@app.command("ship")
def ship(
    sources: Annotated[
        list[str],
        typer.Argument(help="run folder or checkpoint; or 2+ shipped names for an ensemble"),
    ],
    name: Annotated[str, typer.Option(help="shipped model name, e.g. default or fast")],
    command: Annotated[
        str | None, typer.Option(help="the training command that produced SOURCE")
    ] = None,
    data: Annotated[Path, typer.Option(help="HDF5 store to measure on")] = DEFAULT_STORE,
    wall_time: Annotated[float | None, typer.Option(help="training wall time, seconds")] = None,
    dest: Annotated[Path | None, typer.Option(help="folder (default: the package)")] = None,
    half: Annotated[
        bool, typer.Option(help="store the large weights as float16 (half the bytes)")
    ] = True,
    int8: Annotated[
        bool,
        typer.Option(help="ensemble: members run their shipped `ferkit export --int8` files"),
    ] = False,
) -> None:
    """Package a trained model as shipped weights with a model card of measured results;
    several shipped models as an ensemble (`<name>.ensemble.json`) with its own card."""
    from ferkit.errors import ConfigError
    from ferkit.ship import ship_ensemble, ship_model

    if len(sources) > 1:
        written = ship_ensemble(sources, name, data=data, dest=dest, int8=int8)
    elif int8:
        raise ConfigError("--int8 is for ensembles; export one model with `ferkit export --int8`")
    elif command is None:
        raise ConfigError("--command is required: the training command that produced SOURCE")
    else:
        written = ship_model(
            sources[0], name, data=data, command=command, wall_time_s=wall_time, dest=dest,
            half=half,
        )  # fmt: skip
    typer.echo("\n".join(f"wrote {path}" for path in written))
