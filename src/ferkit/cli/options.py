"""Options shared by several commands: the face options of every command that cuts
faces out of images (one set of flags, turned into `Recognizer` options by `face_options`) and
the thread count."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

THREADS_HELP = "CPU threads for torch and OpenCV (1 is fastest for per-frame work)"

# The face options of every command that cuts faces out of images (predict, evaluate
# --folder, explain, serve): one set of flags, turned into Recognizer options by face_options().
Detector = Annotated[str, typer.Option(help="haar | mtcnn | yunet | none")]

YunetModel = Annotated[Path | None, typer.Option(help="YuNet .onnx model file (yunet)")]

EyeCheck = Annotated[bool, typer.Option(help="haar: keep faces with a visible eye")]

Equalize = Annotated[
    bool, typer.Option(help="histogram-equalise face crops (helps on camera faces)")
]

Align = Annotated[
    str | None,
    typer.Option(
        help="template: frame faces as FER-2013 frames them (landmarks or box) | box: the "
        "detector's box [default: the model's, template]"
    ),
]


def face_options(detector: str, yunet_model: Path | None, eye_check: bool, equalize: bool,
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
