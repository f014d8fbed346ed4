"""What the server accepts, and the checks that turn anything else into a clear refusal.

A public-facing recognizer must not be knocked over by one request: an upload larger than
memory, a 2 kB PNG whose header promises 100 000 × 100 000 pixels (a decompression bomb:
decoding it would allocate 30 GB), a text file posted as a photo, or a webcam client
sending frames faster than the model can answer. `Limits` holds the numbers; the checks
here raise `Rejected` with the HTTP status and a message that says what was wrong and what
the limit is. `BodyLimit` caps request bodies (413) before anything parses them.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

MiB = 2**20

# Upload content types the server decodes (OpenCV decodes all of them).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff")


@dataclass(frozen=True)
class Limits:
    """Numbers the server enforces; see the module docstring for why each exists.

    max_upload_bytes: largest HTTP request body (one upload, or a whole batch) → 413.
    max_pixels: largest image (width × height read from the header, before decoding) → 413.
    max_batch: most files in one `/api/predict/batch` request.
    max_pending: HTTP requests allowed to wait for the model; more → 503 (retry later).
    max_fps: frames per second one websocket connection may have processed; faster
        frames are answered "dropped" at once.
    queue_size: frames one connection may have waiting; when full the oldest is dropped,
        so answers stay current instead of falling behind the camera.
    max_frame_bytes: largest websocket frame.
    max_streams: websocket connections served at once; more are closed with code 1013.
    """

    max_upload_bytes: int = 20 * MiB
    max_pixels: int = 40_000_000
    max_batch: int = 16
    max_pending: int = 32
    max_fps: float = 15.0
    queue_size: int = 2
    max_frame_bytes: int = 2 * MiB
    max_streams: int = 8

    def __post_init__(self) -> None:
        numbers = asdict(self)
        if any(value <= 0 for value in numbers.values()):
            raise ValueError(f"every limit must be > 0, got {numbers}")

    def to_dict(self) -> dict:
        return asdict(self)


class Rejected(Exception):
    """Input refused by a check; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_content_type(content_type: str | None, name: str) -> None:
    """415 unless the declared type is one of `IMAGE_TYPES` (parameters ignored)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in IMAGE_TYPES:
        raise Rejected(
            415,
            f"{name}: content type {kind or '(none)'!r} is not accepted; "
            f"send an image ({', '.join(IMAGE_TYPES)})",
        )


def decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """Encoded image bytes → BGR uint8 array, after checking its size from the header.

    Pillow reads only the header to get width and height, so a decompression bomb is
    refused (413) before a single pixel is decoded; OpenCV then decodes the pixels, as
    `ferkit.infer.sources.read_image` does for files.
    """
    import cv2
    from PIL import Image

    if not data:
        raise Rejected(422, f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as error:
        raise Rejected(413, f"{name}: {error}") from error
    except Exception as error:  # Pillow raises several unrelated types for non-images
        raise Rejected(422, f"{name}: not a readable image ({type(error).__name__})") from error
    if width * height > limits.max_pixels:
        raise Rejected(
            413,
            f"{name}: image is {width}×{height} = {width * height / 1e6:.1f} megapixels, "
            f"more than the {limits.max_pixels / 1e6:.1f} megapixel limit",
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise Rejected(422, f"{name}: the image data is corrupt or in an unsupported format")
    return image


class BodyLimit:
    """ASGI middleware: 413 with a JSON reason for request bodies over `max_bytes`.

    A declared Content-Length over the limit is refused before any byte is read; a body
    streamed without one is cut off as soon as it passes the limit. (FastAPI's own
    `max_body_size` answers such requests in plain text only.)
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"request body larger than the limit of {max_bytes:,} bytes"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": self.message}, 413, {"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI passes HTTPExceptions through
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited_receive, send)
