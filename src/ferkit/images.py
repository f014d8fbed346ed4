"""Decoding untrusted image bytes within a pixel budget: the one decode every path uses
(server uploads and stream frames, `ferkit predict` files and URLs, `ferkit data prepare`
archives and folders).

A 74-byte PNG can declare 60000 × 60000 pixels: OpenCV would try to allocate 10 GB for it
(or raise its own error), and a real 20000² PNG of 389 kB takes seconds and gigabytes.
So the size is read from the header with Pillow, which touches no pixel data, and the image
is refused (`ImageTooLarge`, naming the file, its size and the limit) before OpenCV decodes
it. Bytes Pillow cannot identify as an image are refused too, so no format slips past the
check; anything else that goes wrong is a `SourceError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from typing import BinaryIO

import numpy as np

from ferkit.errors import ImageTooLarge, SourceError

# 40 megapixels: larger than any camera photo worth recognising faces in (a 7,700 × 5,200
# frame), and about 120 MB once decoded as BGR, so a server or a folder run stays bounded.
MAX_PIXELS = 40_000_000


def image_size(data: bytes | BinaryIO, name: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header of encoded bytes or a seekable binary file (left at
    its start), refusing images over `max_pixels`."""
    from PIL import Image

    file = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    if file.seek(0, io.SEEK_END) == 0:
        raise SourceError(f"{name}: the file is empty")
    file.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as header:
                width, height = header.size
    except Image.DecompressionBombError:  # over Pillow's own, far higher, limit
        raise ImageTooLarge(
            f"{name}: image header declares more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
            f"megapixels (a decompression bomb), over the {max_pixels / 1e6:.1f} megapixel limit"
        ) from None
    except Exception as error:  # Pillow raises several unrelated types for non-images
        raise SourceError(f"{name}: not a readable image ({type(error).__name__})") from None
    finally:
        file.seek(0)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: image is {width}×{height} = {width * height / 1e6:.1f} megapixels, "
            f"more than the {max_pixels / 1e6:.1f} megapixel limit"
        )
    return width, height


def decode_image(
    data: bytes,
    name: str,
    max_pixels: int = MAX_PIXELS,
    *,
    unchanged: bool = False,
    gray: bool = False,
) -> np.ndarray:
    """Encoded bytes → pixels (BGR uint8; `unchanged`: as stored, e.g. gray stays 2-D;
    `gray`: 2-D luma whatever was stored — WebP, which has no gray mode, decodes to three
    slightly different channels), after `image_size` has checked the header."""
    import cv2

    image_size(data, name, max_pixels)
    flags = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR
    if gray:
        flags = cv2.IMREAD_GRAYSCALE
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as error:
        raise SourceError(f"{name}: cannot decode the image ({error.err or error})") from None
    if image is None or image.size == 0:
        raise SourceError(f"{name}: the image data is corrupt or in an unsupported format")
    return image
