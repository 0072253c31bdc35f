"""What an uploaded image may cost, and its checks: shared by the REST API and the web app.

An upload is refused from its byte count and its image header before any pixel is
decoded, so a small file that would decode to gigabytes costs nothing.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferlab.data.images import IMAGE_FORMATS, decode_image
from ferlab.errors import FerlabError
from ferlab.inference.faces import load_image

__all__ = ["ApiError", "Limits", "decode_upload", "probe_upload", "request_pixels"]


@dataclass(frozen=True)
class Limits:
    """What one request may send and hold, so that a single client cannot exhaust the server's memory or CPU.

    Attributes:
        max_request_bytes: the whole request body; a longer one is cut off with 413 while it streams in.
        max_image_bytes: one image file.
        max_pixels: width x height of one image, checked from its header before it is decoded.
        max_request_pixels: all images of one request together, checked from their headers before any is decoded.
        decode_pixels: pixels decoded and held at once across all requests (the rest wait their turn);
            at least `max_request_pixels`, with room beside a large request for small ones.
        max_batch: images in one ``/v1/predict/batch`` request (more: 413).
        formats: Pillow format names accepted (others get 415).
        workers: requests decoded and classified at the same time.
        header_timeout: seconds for a request's headers to arrive once its connection waits for them.
        body_timeout: seconds for a request's whole body to arrive (else 408).
        max_uploads: requests with a body in the server at once, arriving or in work (more: 503 with Retry-After).
    """

    max_request_bytes: int = 64 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_request_pixels: int = 64_000_000
    decode_pixels: int = 100_000_000
    max_batch: int = 16
    formats: frozenset[str] = field(default=IMAGE_FORMATS)
    workers: int = 2
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_uploads: int = 16

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_image_bytes", "max_pixels", "max_request_pixels", "decode_pixels",
                     "max_batch", "workers", "max_uploads"):
            if getattr(self, name) < 1:
                raise FerlabError(f"API limit {name} must be 1 or more, got {getattr(self, name)}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise FerlabError(f"API limit {name} must be above 0 seconds, got {getattr(self, name)}")
        if not self.max_pixels <= self.max_request_pixels <= self.decode_pixels:
            raise FerlabError(f"API limits need max_pixels <= max_request_pixels <= decode_pixels, got "
                              f"{self.max_pixels:,}, {self.max_request_pixels:,} and {self.decode_pixels:,}")


class ApiError(FerlabError):
    """A request refused: answered as JSON ``{"detail": message}`` with `status` by the API, shown by the web app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def probe_upload(data: bytes, name: str, limits: Limits) -> int:
    """The pixels of an uploaded image, read from its header alone.

    Raises:
        ApiError: 400 empty, 413 too many bytes or pixels, 415 no image of an accepted format.
    """
    if not data:
        raise ApiError(400, f"{name} is empty")
    if len(data) > limits.max_image_bytes:
        raise ApiError(413, f"{name} is {len(data):,} bytes, above the limit of {limits.max_image_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels below is the limit
            with Image.open(io.BytesIO(data)) as probe:
                kind, (width, height) = probe.format, probe.size
    except Image.DecompressionBombError as err:
        raise ApiError(413, f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(415, f"{name} is not an image in a format ferlab reads "
                            f"({', '.join(sorted(limits.formats))})") from None
    if kind not in limits.formats:
        raise ApiError(415, f"{name} is a {kind} image; accepted formats: {', '.join(sorted(limits.formats))}")
    if width * height > limits.max_pixels:
        raise ApiError(413, f"{name} is {width}x{height} = {width * height:,} pixels, "
                            f"above the limit of {limits.max_pixels:,}")
    return width * height


def request_pixels(files: Sequence[tuple[str, bytes]], limits: Limits) -> int:
    """The pixels of all of a request's images, from their headers; every file is checked as by `probe_upload`.

    Raises:
        ApiError: as `probe_upload`, or 413 where the files together are above ``max_request_pixels``.
    """
    total = sum(probe_upload(data, name, limits) for name, data in files)
    if total > limits.max_request_pixels:
        raise ApiError(413, f"the {len(files)} images are {total:,} pixels in all, above the limit of "
                            f"{limits.max_request_pixels:,} per request")
    return total


def decode_upload(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """An uploaded image file as RGB uint8 (H, W, 3), upright; checked from its header before it is decoded.

    Raises:
        ApiError: as `probe_upload`, or 422 an image whose data is damaged (a truncated JPEG).
    """
    probe_upload(data, name, limits)
    try:
        return load_image(decode_image(data, name), limits.max_pixels)
    except FerlabError as err:
        raise ApiError(422, str(err)) from None
