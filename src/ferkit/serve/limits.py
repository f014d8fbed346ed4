"""What the server accepts, and the checks that turn anything else into a clear refusal.

A public-facing recognizer must not be knocked over by one request: an upload larger than
memory, a 2 kB PNG whose header promises 100 000 × 100 000 pixels (a decompression bomb:
decoding it would allocate 30 GB), a text file posted as a photo, or a webcam client
sending frames faster than the model can answer, nor by many requests at once: sixteen
39.9-megapixel PNGs fit in a 610 kB batch, and a few such requests decoded side by side
would need gigabytes. So pixels are capped per image and per request from the headers,
and decoding happens inside one `MemoryBudget` shared by every request and stream.
`Limits` holds the numbers; the checks here raise `Rejected` with the HTTP status and a
message that says what was wrong and what the limit is. `BodyLimit` caps request bodies
(413) before anything parses them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ferkit.errors import FerkitError, ImageTooLarge
from ferkit.images import MAX_PIXELS, decode_image, image_size

MiB = 2**20

# Upload content types the server decodes (OpenCV decodes all of them).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff")


@dataclass(frozen=True)
class Limits:
    """Numbers the server enforces; see the module docstring for why each exists.

    max_upload_bytes: largest HTTP request body (one upload, or a whole batch) → 413.
    max_pixels: largest image (width × height read from the header, before decoding) → 413.
    max_request_pixels: most pixels in all the images of one request together → 413.
    decode_budget_bytes: memory for images being decoded or recognised at once, across
        every request and stream (`image_cost`); requests beyond it wait their turn.
    max_batch: most files in one `/api/predict/batch` request.
    max_pending: HTTP requests allowed to wait for the model; more → 503 (retry later).
    max_fps: frames per second one websocket connection may have processed; faster
        frames are answered "dropped" at once.
    queue_size: frames one connection may have waiting; when full the oldest is dropped,
        so answers stay current instead of falling behind the camera.
    max_frame_bytes: largest websocket frame.
    max_streams: websocket connections served at once; past it, a new one closes the
        stream silent longest if that one has been silent for `stream_evict_after` seconds
        (an idle squatter, not a camera), else it is closed with code 1013.
    stream_idle_timeout: seconds a stream may send nothing (and wait for no answer) before
        the server closes it (code 1008).
    stream_evict_after: see max_streams.
    max_connections: open TCP connections; a new one past it closes the oldest connection
        still sending its request headers, or is refused with 503 when there is none.
    header_timeout: seconds a connection has to send a request's headers (slowloris).
    body_timeout: seconds a request has to send its whole body once the headers are in.
    """

    max_upload_bytes: int = 20 * MiB
    max_pixels: int = MAX_PIXELS
    max_request_pixels: int = MAX_PIXELS
    decode_budget_bytes: int = 384 * MiB
    max_batch: int = 16
    max_pending: int = 32
    max_fps: float = 15.0
    queue_size: int = 2
    max_frame_bytes: int = 2 * MiB
    max_streams: int = 8
    stream_idle_timeout: float = 60.0
    stream_evict_after: float = 10.0
    max_connections: int = 200
    header_timeout: float = 10.0
    body_timeout: float = 60.0

    def __post_init__(self) -> None:
        numbers = asdict(self)
        if any(value <= 0 for value in numbers.values()):
            raise ValueError(f"every limit must be > 0, got {numbers}")
        largest = image_cost(1, self.max_request_pixels, self.max_upload_bytes)
        if self.decode_budget_bytes < largest:
            raise ValueError(
                f"decode_budget_bytes={self.decode_budget_bytes:,} cannot hold one request of "
                f"max_request_pixels and max_upload_bytes ({largest:,} bytes)"
            )

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


def image_cost(width: int, height: int, encoded_bytes: int) -> int:
    """Bytes an image holds while the server works on it: the decoded BGR pixels and their
    gray copy (4 per pixel) plus the encoded upload itself."""
    return 4 * width * height + encoded_bytes


class MemoryBudget:
    """Bytes of images being decoded or recognised across every request and stream at
    once (see `image_cost`). A request reserves its images' cost, read from their headers,
    before any pixel is decoded and waits while the budget is spent, so memory stays
    bounded however many requests arrive together; the pending limit bounds the wait."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._ready = threading.Condition()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        if cost > self.total:  # Limits makes this impossible for one admitted request
            raise Rejected(413, f"request needs {cost:,} bytes, over the {self.total:,} budget")
        with self._ready:
            self._ready.wait_for(lambda: self.used + cost <= self.total)
            self.used += cost
        try:
            yield
        finally:
            with self._ready:
                self.used -= cost
                self._ready.notify_all()


def measure(files: list[tuple[BinaryIO, str]], limits: Limits) -> int:
    """The memory cost of a request's images, from their headers; 413 when one image or
    all of them together are over the pixel limits, 422 when one is not an image."""
    cost = pixels = 0
    for file, name in files:
        width, height = _checked(image_size, file, name, limits.max_pixels)
        pixels += width * height
        cost += image_cost(width, height, file.seek(0, io.SEEK_END))
        file.seek(0)
    if pixels > limits.max_request_pixels:
        raise Rejected(
            413,
            f"{len(files)} images of {pixels / 1e6:.1f} megapixels in all, more than the "
            f"{limits.max_request_pixels / 1e6:.1f} megapixel limit per request",
        )
    return cost


def decode(file: BinaryIO, name: str, limits: Limits) -> np.ndarray:
    """BGR uint8 pixels of an upload `measure` has admitted (see `ferkit.images`)."""
    return _checked(decode_image, file.read(), name, limits.max_pixels)


def _checked(function, *args):
    """Run an image check, turning its ferkit errors into HTTP refusals."""
    try:
        return function(*args)
    except ImageTooLarge as error:
        raise Rejected(413, str(error)) from None
    except FerkitError as error:
        raise Rejected(422, str(error)) from None


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
