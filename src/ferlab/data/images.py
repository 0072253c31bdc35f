"""Decoding image files into PIL images, with errors that name the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

from ferlab.errors import FerlabError

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "is_image_name"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(data: bytes | Path, source: str) -> Image.Image:
    """Fully decode an image (so truncation shows up here) with EXIF orientation applied.

    Raises:
        FerlabError: the bytes are no readable image; the message names `source`.
    """
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is Pillow's, not ours; the error for real bombs still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            image.load()
            return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise FerlabError(f"cannot read image {source}: {err}") from None
