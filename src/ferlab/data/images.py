"""Decoding image files into PIL images, with errors that name the file."""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ferlab.errors import FerlabError

__all__ = ["IMAGE_EXTENSIONS", "IMAGE_FORMATS", "decode_image", "is_image_name", "perceptual_hash"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
#: Pillow's format names for the files IMAGE_EXTENSIONS name (MPO: multi-picture JPEGs from cameras).
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM"})


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


@functools.cache
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``m @ x`` transforms the columns of x."""
    k = np.arange(n)
    m = np.sqrt(2 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    m[0] /= np.sqrt(2)
    return m


def perceptual_hash(image: Image.Image) -> int:
    """64-bit DCT hash (pHash) of the grayscale image; re-encoding or brightening barely changes it.

    Computed here because the imagehash library is no ferlab dependency. In samples of FER2013
    pairs, those within 4 bits of this hash were near-duplicates, while a difference hash (dHash)
    already paired different faces at 3-4 bits.
    """
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    m = _dct_matrix(32)
    low = (m @ pixels @ m.T)[:8, :8]  # (8, 8) lowest frequencies
    return int.from_bytes(np.packbits(low > np.median(low)).tobytes(), "big")
