"""Reading photos, and cutting detected faces out of them the way training crops were prepared.

A face crop goes through `ferlab.data.transforms.to_pixels` with the model's own
`Preprocessing`, the same call training makes on a whole crop image, so a crop
that covers an image gives exactly the pixels training saw.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from ferlab.data.framing import Framing
from ferlab.data.images import decode_image
from ferlab.data.transforms import Preprocessing, to_pixels
from ferlab.errors import FerlabError
from ferlab.inference.detect import Face

__all__ = ["face_pixels", "load_image"]

# 16-bit containers: Pillow clips them to 8 bits on conversion (a mostly white image), so they are scaled here.
WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise FerlabError(
            f"{name} is {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,}; "
            f"downscale it first or raise max_pixels"
        )


def _read_file(path: Path, max_pixels: int) -> Image.Image:
    """Decode `path` after checking its size from the header, so a huge image is refused before it fills memory."""
    if not path.is_file():
        raise FerlabError(f"no such image file: {path}")
    try:
        with warnings.catch_warnings():
            # Pillow warns about big images; the limit that matters is max_pixels, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                size = probe.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise FerlabError(f"cannot read image {path}: {err}") from None
    _check_pixels(size, max_pixels, str(path))
    return decode_image(path, str(path))


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    """Any Pillow mode as RGB uint8 (H, W, 3): 16-bit scaled to 8, transparency composited over white.

    White, because that is how viewers show a transparent background; dropping the
    alpha channel instead reveals whatever colour the hidden pixels hold.
    """
    if image.mode == "F":
        raise FerlabError(f"{name}: floating-point images are not supported; save it with 8 or 16 bits per channel")
    if image.mode in WIDE_MODES:
        wide = np.asarray(image).astype(np.float32)  # (H, W) in 0..65535
        image = Image.fromarray(np.clip(np.round(wide / 257), 0, 255).astype(np.uint8))
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(source: str | Path | Image.Image | np.ndarray, max_pixels: int = 50_000_000) -> np.ndarray:
    """An image file, PIL image or array as RGB uint8 (H, W, 3), upright.

    EXIF orientation is applied to files and PIL images; 16-bit, grayscale, palette,
    CMYK and transparent images are converted (see `_to_rgb`). Arrays must be uint8
    (H, W), (H, W, 3) RGB or (H, W, 4) RGBA; an RGB array is returned as it is.

    Raises:
        FerlabError: a missing or unreadable file (named), an unsupported array, or an
            image above `max_pixels` pixels.
    """
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or not (source.ndim == 2 or (source.ndim == 3 and source.shape[2] in (3, 4))):
            raise FerlabError(
                f"expected a uint8 (H, W), (H, W, 3) or (H, W, 4) image array, got {source.dtype} {source.shape}"
            )
        _check_pixels((source.shape[1], source.shape[0]), max_pixels, "image array")
        if source.ndim == 3 and source.shape[2] == 3:
            return np.ascontiguousarray(source)
        return _to_rgb(Image.fromarray(source), "image array")
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, "PIL image")
        return _to_rgb(ImageOps.exif_transpose(source), "PIL image")
    path = Path(source).expanduser()
    return _to_rgb(_read_file(path, max_pixels), str(path))


def _eye_angle(face: Face) -> float:
    """Degrees to rotate counter-clockwise so the eyes (landmarks 0 and 1) lie level."""
    (right_x, right_y), (left_x, left_y) = face.landmarks[:2]
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def _crop(image: np.ndarray, face: Face, framing: Framing) -> np.ndarray:
    """The square `framing` cuts around `face`, eyes levelled where it aligns: (side, side, 3).

    Its corner sits on whole pixels, so an unrotated crop copies the image's pixels
    exactly; parts outside the image repeat its edge pixels.
    """
    centre_x, centre_y, exact_side = framing.square(face.box)
    side = max(1, round(exact_side))
    left, top = round(centre_x - side / 2), round(centre_y - side / 2)
    angle = _eye_angle(face) if framing.align and face.landmarks else 0.0
    matrix = cv2.getRotationMatrix2D((left + side / 2, top + side / 2), angle, 1.0)  # (2, 3), about the crop centre
    matrix[:, 2] -= (left, top)
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_pixels(
    image: np.ndarray, faces: Sequence[Face], prep: Preprocessing, framing: Framing = Framing()
) -> np.ndarray:
    """The model inputs of the faces in an RGB uint8 image (H, W, 3): uint8 (N, C, S, S).

    Args:
        faces: detections in `image`'s pixels.
        prep: the model's preprocessing (size, channels), from its metadata.
        framing: how each face is cut and resized, from the model's metadata (`ModelMeta.framing_for`).

    Raises:
        FerlabError: an image that is not RGB uint8.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise FerlabError(f"face_pixels takes an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    crops = [to_pixels(Image.fromarray(_crop(image, face, framing)), prep, framing.filter) for face in faces]
    if not crops:
        return np.zeros((0, prep.channels, prep.pixel_size, prep.pixel_size), dtype=np.uint8)
    return np.stack(crops)
