"""Reading and decoding image files into PIL images, with errors that name the file.

Every reader of image files goes through `read_image_file`, so a FIFO, a device or
a huge file planted in a dataset is refused before a byte is read, and never hangs
or fills the memory of a scan, ``data stats`` or training.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ferlab.errors import FerlabError

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "MAX_IMAGE_BYTES",
    "RefusedFile",
    "decode_image",
    "is_image_name",
    "perceptual_hash",
    "read_image_file",
    "too_large",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
#: Pillow's format names for the files IMAGE_EXTENSIONS name (MPO: multi-picture JPEGs from cameras).
IMAGE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM"})
#: Largest image file read: a face image is far smaller; anything bigger is a mistake or an attack.
MAX_IMAGE_BYTES = 64 * 2**20

_FILE_TYPES = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
               (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class RefusedFile(FerlabError):
    """A file left unread on purpose: `kind` is "not_regular" (FIFO, device...) or "too_large"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _format_bytes(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"


def too_large(source: str, size: int | None, max_bytes: int) -> RefusedFile:
    """The error for a file (or zip member) above the cap; `size` None when it grew while being read."""
    what = f"{_format_bytes(size)} is" if size is not None else "it grew"
    return RefusedFile(f"cannot read {source}: {what} above the {_format_bytes(max_bytes)} cap for an image file",
                       "too_large")


def _check_regular(status: os.stat_result, source: str, max_bytes: int) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _FILE_TYPES if test(status.st_mode)), "special file")
        raise RefusedFile(f"cannot read {source}: it is a {kind}, not a regular file", "not_regular")
    if status.st_size > max_bytes:
        raise too_large(source, status.st_size, max_bytes)


def read_image_file(path: str | Path, source: str | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, following symlinks.

    The file is checked with stat before it is opened (opening a device can have effects of its
    own) and again once open, without blocking (a FIFO opened for reading waits for a writer).

    Raises:
        RefusedFile: not a regular file, or above `max_bytes`.
        FerlabError: it cannot be read; messages name `source` (default: the path).
    """
    source = source or str(path)
    try:
        _check_regular(os.stat(path), source, max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise FerlabError(f"cannot read {source}: {err.strerror or err}") from None
    with open(fd, "rb") as handle:
        # Swapped for a FIFO or a bigger file since the stat: check what was opened.
        _check_regular(os.fstat(fd), source, max_bytes)
        try:
            data = handle.read(max_bytes + 1)
        except OSError as err:
            raise FerlabError(f"cannot read {source}: {err.strerror or err}") from None
    if len(data) > max_bytes:  # grew while being read
        raise too_large(source, None, max_bytes)
    return data


def decode_image(data: bytes | Path, source: str) -> Image.Image:
    """Fully decode an image (so truncation shows up here) with EXIF orientation applied.

    Args:
        data: the image's bytes, or a file read with `read_image_file`.

    Raises:
        FerlabError: the bytes are no readable image, or the file is refused; the message names `source`.
    """
    if isinstance(data, Path):
        data = read_image_file(data, f"image {source}")
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is Pillow's, not ours; the error for real bombs still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
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
