"""`ferkit serve`: the HTTP API and web page."""

from __future__ import annotations

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
    detector: Detector = DETECTOR,
    yunet_model: YunetModel = None,
    eye_check: EyeCheck = False,
    equalize: Equalize = True,
    align: Align = None,
    turned_search: TurnedSearch = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    cors: Annotated[
        list[str] | None, typer.Option(help="allow this web origin to call the API (repeatable)")
    ] = None,
    threads: Annotated[int, typer.Option(help=THREADS_HELP)] = 1,
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
    faces = face_options(detector, yunet_model, eye_check, equalize, align, turned_search)
    served = create_app(model, cors_origins=cors or (), device=device, **faces)
    choice = served.state.engine.choice
    console.print(f"[{'green' if choice.trained else 'bold red'}]model: {choice.description}[/]")
    if not is_loopback(host):
        console.print(f"[yellow]listening on {host}: reachable from other machines, no auth[/]")
    console.print(f"web page: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    run(served, host=host, port=port, log_level=log_level)
