"""The `ferkit` command line: a thin layer that parses options, calls the Python API and
prints results. Anything worth doing from Python lives in the package, not here.

Errors caused by input (`FerkitError`) are printed on one line to stderr with exit code 1.
Heavy modules are imported inside the command that needs them so `ferkit --help` is quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ferkit.errors import FerkitError
from ferkit.paths import DEFAULT_STORE


class _App(typer.Typer):
    """Typer app that turns ferkit's input errors into one line and a non-zero exit."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except FerkitError as error:
            print(f"ferkit: error: {error}", file=sys.stderr)
            sys.exit(1)


# Help text is Markdown, not Rich markup, which takes any [word] for a style and drops it
# (`ferkit[serve]`, `[default: 2]`).
HELP_MARKUP = "markdown"
app = _App(
    name="ferkit",
    help="Facial expression recognition: data, training, tuning, evaluation, export, recognition.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
data_app = typer.Typer(
    help="Prepare and inspect FER-2013 data stores.", no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)  # fmt: skip
app.add_typer(data_app, name="data")


# ---------------------------------------------------------------- data
@data_app.command("prepare")
def data_prepare(
    source: Annotated[Path, typer.Argument(help="fer2013.csv, an image folder, or a .tar.gz/.zip")],
    out: Annotated[Path, typer.Option(help="HDF5 store to write")] = DEFAULT_STORE,
    force: Annotated[bool, typer.Option(help="overwrite an existing store")] = False,
    val_fraction: Annotated[
        float, typer.Option(help="val split taken from train when the source has none")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="seed of that val split")] = 0,
    class_map: Annotated[
        list[str] | None, typer.Option(help="rename a class folder: old=new (repeatable)")
    ] = None,
    drop_undecodable: Annotated[bool, typer.Option(help="drop undecodable files")] = True,
    wrong_size: Annotated[
        str, typer.Option(help="images not 48×48 gray: convert (with a warning) or drop")
    ] = "convert",
    drop_blank: Annotated[bool, typer.Option(help="drop constant/blank images")] = True,
    drop_duplicates: Annotated[bool, typer.Option(help="drop exact duplicates in a split")] = True,
    drop_leaks: Annotated[
        bool, typer.Option(help="drop train copies of images also in val/test")
    ] = False,
    near_duplicates: Annotated[
        bool, typer.Option(help="report near-duplicates by perceptual hash")
    ] = True,
    ferplus: Annotated[
        Path | None,
        typer.Option(
            help="FER+ votes to store beside the labels: kaggle_votes.csv (joined by file), "
            "or fer2013new.csv when SOURCE is the original fer2013.csv (joined by row)"
        ),
    ] = None,
) -> None:
    """Validate, clean and store a FER-2013 source as one HDF5 file."""
    from ferkit.data import CleanOptions, prepare
    from ferkit.labels import parse_class_map

    options = CleanOptions(
        drop_undecodable=drop_undecodable,
        wrong_size=wrong_size,
        drop_blank=drop_blank,
        drop_duplicates=drop_duplicates,
        drop_leaks=drop_leaks,
        near_duplicates=near_duplicates,
    )
    result = prepare(
        source,
        out,
        force=force,
        val_fraction=val_fraction,
        seed=seed,
        class_map=parse_class_map(class_map or []),
        clean=options,
        ferplus=ferplus,
        progress=True,
    )
    typer.echo(result.summary())


@data_app.command("inspect")
def data_inspect(
    store: Annotated[Path, typer.Argument(help="an HDF5 store written by `ferkit data prepare`")],
    plot: Annotated[bool, typer.Option(help="write class-distribution and sample plots")] = False,
    out: Annotated[Path | None, typer.Option(help="folder for the plots (default: beside)")] = None,
) -> None:
    """Class distribution per split, normalisation statistics and the cleaning summary; with
    FER+ votes, their agreement with the labels and the images FER+ calls not-a-face."""
    from rich.console import Console

    from ferkit.data import inspect_table, open_store

    with open_store(store) as opened:
        Console().print(inspect_table(opened))
        if plot:
            from ferkit.evaluate.plots import plot_class_distribution, plot_sample_grid

            folder = out or store.parent
            folder.mkdir(parents=True, exist_ok=True)
            stem = store.stem
            chart = plot_class_distribution(opened.counts(), folder / f"{stem}_classes.png")
            grid = plot_sample_grid(opened, folder / f"{stem}_samples.png")
            typer.echo(f"wrote {chart}\nwrote {grid}")
            if opened.has_ferplus:
                from ferkit.data.summary import ferplus_agreement
                from ferkit.data.targets import MAJORITY_NAMES
                from ferkit.evaluate.plots import plot_confusion

                plot = plot_confusion(
                    sum(ferplus_agreement(opened).values()), opened.class_names,
                    folder / f"{stem}_ferplus_agreement.png", normalize=True,
                    title="FER-2013 label × FER+ majority", columns=MAJORITY_NAMES,
                    axes=("FER-2013 label", "FER+ majority"),
                )  # fmt: skip
                typer.echo(f"wrote {plot}")


# ---------------------------------------------------------------- models
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


# ---------------------------------------------------------------- predict · demo
_THREADS_HELP = "CPU threads for torch and OpenCV (1 is fastest for per-frame work)"
# The face options of every command that cuts faces out of images (predict, evaluate
# --folder, explain, serve): one set of flags, turned into Recognizer options by _faces().
_Detector = Annotated[str, typer.Option(help="haar | mtcnn | yunet | none")]
_YunetModel = Annotated[Path | None, typer.Option(help="YuNet .onnx model file (yunet)")]
_EyeCheck = Annotated[bool, typer.Option(help="haar: keep faces with a visible eye")]
_Equalize = Annotated[
    bool, typer.Option(help="histogram-equalise face crops (helps on camera faces)")
]
_Align = Annotated[
    str | None,
    typer.Option(
        help="template: frame faces as FER-2013 frames them (landmarks or box) | box: the "
        "detector's box [default: the model's, template]"
    ),
]


def _faces(detector: str, yunet_model: Path | None, eye_check: bool, equalize: bool,
           align: str | None) -> dict:  # fmt: skip
    """The Recognizer's face options (detector and its options, equalisation, alignment)
    from the shared flags, so every command crops faces the same way."""
    from ferkit.errors import ConfigError

    options: dict = {}
    if detector == "yunet":
        options["model_path"] = yunet_model
    elif yunet_model is not None:
        raise ConfigError("--yunet-model is for --detector yunet")
    if eye_check:
        if detector != "haar":
            raise ConfigError("--eye-check works with --detector haar only")
        options["eye_check"] = True
    return {"detector": detector, "detector_options": options, "equalize": equalize,
            "align": align}  # fmt: skip


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
    detector: _Detector = "haar",
    yunet_model: _YunetModel = None,
    eye_check: _EyeCheck = False,
    equalize: _Equalize = True,
    align: _Align = None,
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
    threads: Annotated[int, typer.Option(help=_THREADS_HELP)] = 1,
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
        **_faces(detector, yunet_model, eye_check, equalize, align),
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
    workers: Annotated[int, typer.Option(help="worker processes (Ray: CPUs of a local cluster)")] = 1,
    engine: Annotated[str, typer.Option(help="local (process pool) | ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster HOST:PORT (or auto)")] = None,
    model: Annotated[str, typer.Option(help="shipped model name, checkpoint or run folder")] = (
        "default"
    ),
    backend: Annotated[str, typer.Option(help="auto | torch | onnx")] = "auto",
    detector: _Detector = "haar",
    yunet_model: _YunetModel = None,
    eye_check: _EyeCheck = False,
    equalize: _Equalize = True,
    align: _Align = None,
    tracking: Annotated[bool, typer.Option(help="track faces across video frames")] = True,
    smoothing: Annotated[str, typer.Option(help="mean | ema | none (per track)")] = "mean",
    chunk: Annotated[
        float, typer.Option(help="split videos longer than this many seconds (0: never)")
    ] = 300.0,
    overlap: Annotated[float, typer.Option(help="seconds before each split to join tracks")] = 2.0,
    threads: Annotated[int, typer.Option(help=_THREADS_HELP + ", per worker")] = 1,
) -> None:
    """Recognise emotions in many files in parallel (local pool or Ray) into Parquet; a
    rerun skips files already done. Exit code 1 only if no file succeeded."""
    from rich.console import Console
    from rich.table import Table

    from ferkit.batch import recognizer_settings, run_batch

    faces = _faces(detector, yunet_model, eye_check, equalize, align)
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
    detector: Annotated[str, typer.Option(help="haar | mtcnn | yunet | none")] = "haar",
    threads: Annotated[int, typer.Option(help=_THREADS_HELP)] = 1,
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


# ---------------------------------------------------------------- train
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


# ---------------------------------------------------------------- evaluate · explain · compare
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
    detector: _Detector = "haar",
    yunet_model: _YunetModel = None,
    eye_check: _EyeCheck = False,
    equalize: _Equalize = True,
    align: _Align = None,
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
    options (detector, --yunet-model, --eye-check, --equalize, --align) and defaults.
    """
    from rich.console import Console
    from rich.table import Table

    from ferkit.evaluate import evaluate
    from ferkit.labels import parse_class_map

    faces = _faces(detector if detect else "none", yunet_model, eye_check, equalize, align)
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
    detector: _Detector = "haar",
    yunet_model: _YunetModel = None,
    eye_check: _EyeCheck = False,
    equalize: _Equalize = True,
    align: _Align = None,
    layer: Annotated[str | None, typer.Option(help="layer to explain (default: last)")] = None,
) -> None:
    """Grad-CAM heatmaps: which face regions drive the predicted (or a chosen) emotion."""
    from ferkit.evaluate import explain_images

    faces = _faces(detector if detect else "none", yunet_model, eye_check, equalize, align)
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


# ---------------------------------------------------------------- tune
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


# ---------------------------------------------------------------- export
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


# ---------------------------------------------------------------- serve
@app.command("serve")
def serve_cmd(
    host: Annotated[
        str, typer.Option(help="address to listen on (loopback only by default)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[
        str | None,
        typer.Option(help="shipped name, checkpoint, run folder or .onnx [default: best found]"),
    ] = None,
    detector: _Detector = "haar",
    yunet_model: _YunetModel = None,
    eye_check: _EyeCheck = False,
    equalize: _Equalize = True,
    align: _Align = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    cors: Annotated[
        list[str] | None, typer.Option(help="allow this web origin to call the API (repeatable)")
    ] = None,
    threads: Annotated[int, typer.Option(help=_THREADS_HELP)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn: debug | info | warning | error")] = (
        "info"
    ),
) -> None:
    """HTTP API and live-webcam web page (the serve extra: pip install 'ferkit[serve]')."""
    from rich.console import Console

    from ferkit.infer.recognizer import set_threads
    from ferkit.serve.app import create_app, is_loopback, run

    set_threads(threads)
    console = Console()
    faces = _faces(detector, yunet_model, eye_check, equalize, align)
    served = create_app(model, cors_origins=cors or (), device=device, **faces)
    choice = served.state.engine.choice
    console.print(f"[{'green' if choice.trained else 'bold red'}]model: {choice.description}[/]")
    if not is_loopback(host):
        console.print(f"[yellow]listening on {host}: reachable from other machines, no auth[/]")
    console.print(f"web page: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    run(served, host=host, port=port, log_level=log_level)


# ---------------------------------------------------------------- ship
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
) -> None:
    """Package a trained model as shipped weights with a model card of measured results;
    several shipped models as an ensemble (`<name>.ensemble.json`) with its own card."""
    from ferkit.errors import ConfigError
    from ferkit.ship import ship_ensemble, ship_model

    if len(sources) > 1:
        written = ship_ensemble(sources, name, data=data, dest=dest)
    elif command is None:
        raise ConfigError("--command is required: the training command that produced SOURCE")
    else:
        written = ship_model(
            sources[0], name, data=data, command=command, wall_time_s=wall_time, dest=dest,
            half=half,
        )  # fmt: skip
    typer.echo("\n".join(f"wrote {path}" for path in written))


# ---------------------------------------------------------------- studies
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
        command="ferkit " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    if result.reused:
        typer.echo(f"reused finished studies: {', '.join(result.reused)}")
    typer.echo(f"wrote {result.table}" + (f" and {result.plot}" if result.plot else ""))
