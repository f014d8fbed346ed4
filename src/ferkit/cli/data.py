"""`ferkit data prepare`, `ferkit data inspect`, `ferkit data pack` and `ferkit data unpack`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.cli.app import HELP_MARKUP, app
from ferkit.paths import DEFAULT_STORE

data_app = typer.Typer(
    help="Prepare and inspect FER-2013 data stores.", no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)  # fmt: skip

app.add_typer(data_app, name="data")


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


@data_app.command("pack")
def data_pack(
    store: Annotated[Path, typer.Argument(help="an HDF5 store written by `ferkit data prepare`")],
    out: Annotated[Path, typer.Option(help="the .npz pack to write")],
    splits: Annotated[str, typer.Option(help="splits to take, comma-separated")] = "train,val",
    lossy: Annotated[
        str, typer.Option(help="splits stored as WebP (the others as lossless PNG)")
    ] = "train",
    quality: Annotated[int, typer.Option(help="WebP quality of the lossy splits")] = 95,
    force: Annotated[bool, typer.Option(help="overwrite an existing pack")] = False,
) -> None:
    """A compact copy of a store for a machine with a transfer limit (docs/gpu.md): the
    training faces as WebP, the faces that pick the epoch lossless."""
    from ferkit.data.pack import pack_store

    def names(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())

    path = pack_store(
        store, out, splits=names(splits), lossy=names(lossy), quality=quality, force=force
    )
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


@data_app.command("unpack")
def data_unpack(
    pack: Annotated[Path, typer.Argument(help="an .npz written by `ferkit data pack`")],
    out: Annotated[Path, typer.Option(help="HDF5 store to write")],
    force: Annotated[bool, typer.Option(help="overwrite an existing store")] = False,
) -> None:
    """Decode a pack back into an HDF5 store that trains like its original."""
    from ferkit.data.pack import unpack_store

    typer.echo(f"wrote {unpack_store(pack, out, force=force)}")
