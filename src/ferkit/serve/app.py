"""ferkit's HTTP API and web page: `create_app()` builds the FastAPI app, `run()` serves it.

    POST /api/predict          an image upload → faces as JSON (?annotate=1: annotated JPEG)
    POST /api/predict/batch    several uploads → faces per image, all through the model at once
    WS   /api/stream           live frames → faces, tracked and smoothed per connection
    GET  /api/health           liveness, the model served, load
    GET  /api/models           the model served and the names `--model` accepts
    GET  /                     the web page: webcam, upload box (static/, no build step)
    GET  /docs, /openapi.json  the OpenAPI documentation

Every refusal is JSON `{"detail": "..."}` saying what was wrong: 413 for a body or image
over the limits, 415 for a non-image upload, 422 for an image that cannot be decoded or a
malformed request, 503 when too many requests wait (see `ferkit.serve.limits`), 403 for a
POST or websocket from another site's page (`ferkit.serve.guard`), 408 for a request whose
headers or body do not arrive in time (`ferkit.serve.protocol`). The server binds to
loopback unless told otherwise, and sends no CORS headers unless origins are given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import FastAPI, File, Query, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ferkit.errors import FerkitError
from ferkit.serve.engine import Engine
from ferkit.serve.guard import OriginGuard, is_loopback
from ferkit.serve.limits import BodyLimit, Limits, Rejected, check_content_type
from ferkit.serve.listener import ACCEPT_BURST, descriptor_budget, listen_on
from ferkit.serve.protocol import guarded_protocol
from ferkit.serve.stream import serve_stream

log = logging.getLogger(__name__)

STATIC = Path(str(resources.files("ferkit.serve") / "static"))
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:",
    "X-Content-Type-Options": "nosniff",
}


class FaceOut(BaseModel):
    box: list[int]  # x, y, width, height in pixels
    label: str
    score: float
    track_id: int | None
    probs: dict[str, float]


class PredictionOut(BaseModel):
    file: str
    width: int
    height: int
    faces: list[FaceOut]


class BatchOut(BaseModel):
    results: list[PredictionOut]


def create_app(
    model=None,
    *,
    limits: Limits | None = None,
    cors_origins: Sequence[str] = (),
    **recognizer_options,
) -> FastAPI:
    """The app serving `model` (None: the best available, as `ferkit demo` chooses; a
    name, checkpoint, run folder or .onnx file; or a loaded model/classifier).

    recognizer_options go to `Recognizer` (detector, device, smoothing, tracking, ...).
    cors_origins: origins allowed to call the API from other sites' pages (none by default:
        only the server's own page may POST or open the stream).
    """
    limits = limits or Limits()
    engine = Engine.load(model, limits, **recognizer_options)
    app = FastAPI(
        title="ferkit",
        summary="Facial expression recognition: faces and their emotions in images and streams.",
        version=_version(),
        form_limits={"max_files": limits.max_batch, "max_fields": 4},
    )
    app.state.engine = engine
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)
    app.add_middleware(OriginGuard, allowed_origins=cors_origins)
    _add_error_handlers(app)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )  # fmt: skip

    @app.get("/api/health", tags=["service"])
    async def health() -> dict:
        """Liveness and load: the model served, open streams, requests waiting."""
        return {
            "status": "ok",
            "model": engine.choice.description,
            "trained": engine.choice.trained,
            "streams": engine.streams,
            "pending": engine.pending,
            "uptime_s": round(time.monotonic() - engine.started, 1),
        }

    @app.get("/api/models", tags=["service"])
    async def models() -> dict:
        """The model being served, and the shipped model names `ferkit serve --model` takes."""
        from ferkit.models.checkpoint import shipped_models

        return {
            "active": engine.describe(),
            "shipped": shipped_models(),
            "limits": limits.to_dict(),
        }

    @app.post(
        "/api/predict",
        tags=["recognition"],
        response_model=PredictionOut,
        responses={200: {"content": {"image/jpeg": {}}, "description": "faces, or ?annotate=1"}},
    )
    async def predict(
        file: Annotated[UploadFile, File(description="the image (JPEG, PNG, WebP, BMP, TIFF)")],
        annotate: Annotated[
            bool, Query(description="return the image with boxes, labels and bars (JPEG)")
        ] = False,
    ):
        """Faces in one uploaded image, with every emotion's probability."""
        [prediction] = await engine.predict([_admit(file, file.filename or "upload")], annotate)
        if annotate:
            headers = {"X-Faces": str(len(prediction.faces))}
            return Response(prediction.annotated, media_type="image/jpeg", headers=headers)
        return prediction.to_dict()

    @app.post("/api/predict/batch", tags=["recognition"], response_model=BatchOut)
    async def predict_batch(
        files: Annotated[
            list[UploadFile], File(description="the images (at most Limits.max_batch)")
        ],
    ):
        """Faces in each of several uploaded images (all faces go through the model together)."""
        uploads = [_admit(f, f"files[{i}] {f.filename or ''}".strip()) for i, f in enumerate(files)]
        return {"results": [p.to_dict() for p in await engine.predict(uploads)]}

    @app.websocket("/api/stream")
    async def stream(websocket: WebSocket) -> None:
        """Live frames in, faces out (see `ferkit.serve.stream` for the protocol)."""
        await serve_stream(websocket, engine)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _admit(upload: UploadFile, name: str) -> tuple[BinaryIO, str]:
    """The file of an upload whose declared type is an image (415 otherwise); the engine
    reads it only once the image has been measured and admitted."""
    check_content_type(upload.content_type, name)
    return upload.file, name


def _add_error_handlers(app: FastAPI) -> None:
    """Every error becomes JSON {"detail": "..."} that says what was wrong."""

    @app.exception_handler(Rejected)
    async def rejected(_, error: Rejected) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(FerkitError)
    async def ferkit_error(_, error: FerkitError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_, error: HTTPException) -> JSONResponse:
        headers = getattr(error, "headers", None)
        return JSONResponse({"detail": error.detail}, error.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        hint = " (send images as multipart/form-data: field 'file', or 'files' for a batch)"
        return JSONResponse({"detail": "; ".join(problems) + hint}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(_, error: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}); the server log has details"},
            status_code=500,
        )


def run(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
    """Serve an app made by `create_app` with uvicorn until interrupted, on a listening
    socket that keeps connections within the open-file limit (`ferkit.serve.listener`)."""
    import dataclasses

    import uvicorn

    engine: Engine = app.state.engine
    if not is_loopback(host):
        log.warning("listening on %s: reachable from other machines, with no authentication", host)
    budget = descriptor_budget(engine.limits.max_connections)
    limits = dataclasses.replace(engine.limits, max_connections=budget.max_connections)
    listener = listen_on(host, port, budget.ceiling)
    config = uvicorn.Config(
        app, log_level=log_level, http=guarded_protocol(limits), backlog=ACCEPT_BURST,
        loop="asyncio",  # uvloop would accept without the listener's accept()
        ws_max_size=2 * limits.max_frame_bytes,  # the app answers up to 2× with an error
    )  # fmt: skip
    server = uvicorn.Server(config)  # given a socket, uvicorn does not say where it listens
    where = listener.getsockname()
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
        f"[{where[0]}]" if ":" in where[0] else where[0], where[1],
    )  # fmt: skip
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        return
    finally:
        listener.close()
    if not server.started:  # uvicorn logged why (as uvicorn.run, exit 3)
        raise SystemExit(3)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ferkit")
    except PackageNotFoundError:
        return "0+unknown"
