"""Options shared by several commands: the face options of every command that cuts
faces out of images (one set of flags, turned into `Recognizer` options by `face_options`) and
the thread count."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ferkit.infer.defaults import TURNED_SEARCH

THREADS_HELP = "CPU threads for torch and OpenCV (1 is fastest for per-frame work)"

# The face options of every command that cuts faces out of images (predict, batch, evaluate
# --folder, explain, serve): one set of flags, turned into Recognizer options by face_options().
Detector = Annotated[str, typer.Option(help="mtcnn | ssd | haar | yunet | none")]

YunetModel = Annotated[Path | None, typer.Option(help="YuNet .onnx model file (yunet)")]

EyeCheck = Annotated[bool, typer.Option(help="haar: keep faces with a visible eye")]

Equalize = Annotated[
    bool, typer.Option(help="histogram-equalise face crops (helps on camera faces)")
]

Align = Annotated[
    str | None,
    typer.Option(
        help="template: frame faces as FER-2013 frames them (landmarks and box) | similarity: "
        "from the landmark fit alone | box: the detector's box [default: the model's, template]"
    ),
]


_TURNED_DEFAULT = "; ".join(
    f"{name} " + ",".join(f"{a:g}" for a in angles) for name, angles in TURNED_SEARCH.items()
)
TurnedSearch = Annotated[
    str | None,
    typer.Option(
        metavar="DEG[,DEG...]|none",
        help="where the upright pass finds no face, also detect on the image turned by these "
        "angles (heads rolled further than the detector finds), one pass per angle more; "
        f"none: upright only [default: {_TURNED_DEFAULT}; none for the others]",
    ),
]


def turned_search_angles(text: str) -> tuple[float, ...]:
    """The angles of `--turned-search` ("-20,20" → (-20.0, 20.0), "none" → ()); a one-line
    error for anything but "none" or a comma-separated list of non-zero angles within ±90°."""
    from ferkit.errors import ConfigError

    if text.strip().lower() == "none":
        return ()
    angles = []
    for part in text.split(","):
        try:
            angle = float(part)
        except ValueError:
            angle = float("nan")
        if not -90 <= angle <= 90 or angle == 0:
            raise ConfigError(
                f"--turned-search takes angles in degrees within ±90 (not 0), comma-separated, "
                f"e.g. -20,20, or none; got {text!r}"
            )
        angles.append(angle)
    return tuple(dict.fromkeys(angles))


def face_options(detector: str, yunet_model: Path | None, eye_check: bool, equalize: bool,
           align: str | None, turned_search: str | None = None) -> dict:  # fmt: skip
    """The Recognizer's face options (detector and its options, turned search,
    equalisation, alignment) from the shared flags, so every command crops faces the same way."""
    from ferkit.errors import ConfigError

    options: dict = {}
    if turned_search is not None:
        if detector == "none" and turned_search_angles(turned_search):
            raise ConfigError("--turned-search needs a detector (not --detector none, --no-detect)")
        options["rotations"] = turned_search_angles(turned_search)
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
