"""`ferkit predict`, `ferkit batch` and `ferkit demo`: recognition on user media."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import app
from ferkit.cli.options import (
    THREADS_HELP,
    Align,
    Detector,
    Equalize,
    EyeCheck,
    TurnedSearch,
    YunetModel,
    face_options,
)
from ferkit.infer.defaults import DETECTOR


@app.command("predict")
def predict(
    source: Annotated[
        str | None,
        typer.Argument(help="image, folder, glob, video, rtsp/http stream or video web page"),
    ] = None,
    camera: Annotated[int | None, typer.Option(help="read this webcam index instead")] = None,
    out: Annotated[Path, typer.Option(help="folder for the outputs")] = Path("runs/predict"),
    model: Annotated[str, typer.Option(help="shipped model name, checkpoint or run folder")] = (
        "default"
    ),
    backend: Annotated[str, typer.Option(help="auto | torch | onnx (an exported model)")] = (
        "auto"
    ),
    detector: Detector = DETECTOR,
    yunet_model: YunetModel = None,
    eye_check: EyeCheck = False,
    equalize: Equalize = True,
    align: Align = None,
    turned_search: TurnedSearch = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    tracking: Annotated[bool, typer.Option(help="track faces across video frames")] = True,
    detect_every: Annotated[
        int | None, typer.Option(help="detect on every n-th frame [default: 2]")
    ] = None,
    search_every: Annotated[
        int | None, typer.Option(help="scan the whole frame every N frames [default: 12]")
    ] = None,
    min_hits: Annotated[
        int | None, typer.Option(help="report a face after k detections [default: 2]")
    ] = None,
    max_missed: Annotated[
        int | None, typer.Option(help="keep a face for m missed detections [default: 2]")
    ] = None,
    smoothing: Annotated[str, typer.Option(help="mean | ema | none (per track)")] = "mean",
    window: Annotated[int | None, typer.Option(help="frames averaged by 'mean' [default: 5]")] = (
        None
    ),
    alpha: Annotated[
        float | None, typer.Option(help="weight of the newest frame in 'ema' [default: 0.4]")
    ] = None,
    video: Annotated[bool, typer.Option(help="write annotated video / images")] = True,
    gif: Annotated[bool, typer.Option(help="also write an animated GIF (videos)")] = False,
    show: Annotated[bool, typer.Option(help="live window (needs a GUI build of OpenCV)")] = False,
    max_frames: Annotated[int | None, typer.Option(help="stop after this many frames")] = None,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 1,
) -> None:
    """Recognise emotions in photos, folders, videos, streams or a webcam; write outputs."""
    from rich.console import Console

    from ferkit.errors import ConfigError
    from ferkit.infer.recognizer import Recognizer, set_threads
    from ferkit.infer.smoothing import SmoothingConfig
    from ferkit.infer.tracking import TrackingConfig
    from ferkit.infer.writers import record

    set_threads(threads)
    if source is None and camera is None:
        raise ConfigError("give a SOURCE (file, folder, glob, URL) or --camera INDEX")

    def given(**values):  # options left out keep the config's defaults
        return {k: v for k, v in values.items() if v is not None}

    track = given(
        detect_every=detect_every, search_every=search_every, min_hits=min_hits,
        max_missed=max_missed,
    )  # fmt: skip
    recognizer = Recognizer(
        model,
        device=device,
        smoothing=SmoothingConfig(smoothing, **given(window=window, alpha=alpha)),
        tracking=TrackingConfig(**track) if tracking else False,
        backend=backend,
        **face_options(detector, yunet_model, eye_check, equalize, align, turned_search),
    )
    summary = record(
        recognizer, source, out, camera=camera, video=video, gif=gif, show=show,
        max_frames=max_frames, progress=True,
    )  # fmt: skip
    console = Console()
    console.print(summary.table())
    for name, error in summary.failures:
        console.print(f"[yellow]skipped[/] {name}: {error}")
    console.print(f"outputs in {out}/ ({len(summary.files)} files)")


@app.command("batch")
def batch(
    sources: Annotated[
        list[str], typer.Argument(help="files, folders, globs or .txt/.lst files listing them")
    ],
    out: Annotated[Path, typer.Option(help="output folder (Parquet dataset, resumable)")],
    workers: Annotated[
        int, typer.Option(help="worker processes (Ray: CPUs of a local cluster)")
    ] = 1,
    engine: Annotated[str, typer.Option(help="local (process pool) | ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster HOST:PORT (or auto)")] = None,
    model: Annotated[str, typer.Option(help="shipped model name, checkpoint or run folder")] = (
        "default"
    ),
    backend: Annotated[str, typer.Option(help="auto | torch | onnx")] = "auto",
    detector: Detector = DETECTOR,
    yunet_model: YunetModel = None,
    eye_check: EyeCheck = False,
    equalize: Equalize = True,
    align: Align = None,
    turned_search: TurnedSearch = None,
    tracking: Annotated[bool, typer.Option(help="track faces across video frames")] = True,
    smoothing: Annotated[str, typer.Option(help="mean | ema | none (per track)")] = "mean",
    chunk: Annotated[
        float, typer.Option(help="split videos longer than this many seconds (0: never)")
    ] = 300.0,
    overlap: Annotated[float, typer.Option(help="seconds before each split to join tracks")] = 2.0,
    threads: Annotated[int, typer.Option(help=THREADS_HELP + ", per worker")] = 1,
) -> None:
    """Recognise emotions in many files in parallel (local pool or Ray) into Parquet; a
    rerun skips files already done. Exit code 1 only if no file succeeded."""
    from rich.console import Console
    from rich.table import Table

    from ferkit.batch import recognizer_settings, run_batch

    faces = face_options(detector, yunet_model, eye_check, equalize, align, turned_search)
    settings = recognizer_settings(model, backend=backend, tracking=tracking,
                                   smoothing=smoothing, threads=threads, **faces)  # fmt: skip
    report = run_batch(sources, out, settings, engine=engine, workers=workers, address=address,
                       chunk_s=chunk or None, overlap_s=overlap, progress=True)  # fmt: skip
    console = Console()
    if report.failures or report.warnings:
        table = Table(title="files that failed or were cut short")
        table.add_column("file")
        table.add_column("error")
        for name, error in [*report.failures, *report.warnings]:
            table.add_row(name, error)
        console.print(table)
    console.print(
        f"{len(report.processed)} processed, {len(report.skipped)} done before, "
        f"{len(report.failures)} failed; {report.frames} frames, {report.faces} faces in "
        f"{report.seconds:.1f} s; outputs in {out}/"
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="folder for the outputs")] = Path("runs/demo"),
    model: Annotated[
        str | None, typer.Option(help="model to show (default: the best available)")
    ] = None,
    detector: Detector = DETECTOR,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 1,
) -> None:
    """Recognition on bundled media (a NASA portrait and a clip made from it) → runs/demo/."""
    from rich.console import Console

    from ferkit.infer.demo import run_demo
    from ferkit.infer.recognizer import set_threads

    set_threads(threads)

    console = Console()
    choice, photo, clip = run_demo(out, model=model, detector=detector)
    style = "green" if choice.trained else "bold red"
    console.print(f"[{style}]model: {choice.description}[/]")
    console.print(photo.table(title="photo: astronaut.jpg"))
    console.print(clip.table(title="clip generated from it"))
    console.print(f"outputs in {out}/: " + ", ".join(
        str(Path(f).relative_to(out)) for f in photo.files + clip.files
    ))  # fmt: skip
