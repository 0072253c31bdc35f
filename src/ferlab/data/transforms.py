"""Image preprocessing shared by training, evaluation and inference.

Training, evaluation and prediction all call `to_pixels`, with the `Preprocessing`
a model stores in its metadata, so a crop is prepared the same way everywhere.
`tta_views` gives the views that test-time augmentation averages a model's outputs
over. Both work on NumPy arrays and need no torch, so the inference install runs
them as training does; `ferlab.data.tensors.normalize` turns pixels into a model's
float input on the PyTorch side.

A crop model (``resize`` set) sees images of ``resize`` pixels: it trains on random
``input_size`` crops of them and is tested on the centre crop or ten crops, the
recipe of the strongest single FER2013 models (Khaireddin & Chen 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ferlab.errors import FerlabError

__all__ = ["TTA_MODES", "Preprocessing", "check_pixels", "check_tta", "to_pixels", "tta_views", "views_per_image"]

#: Each test-time augmentation mode and how many views `tta_views` cuts from one image in it.
_VIEWS_PER_IMAGE = {"none": 1, "flip": 2, "tencrop": 10}
TTA_MODES = tuple(_VIEWS_PER_IMAGE)
# An empty input is no image, and a larger one than this in a hostile model.json would allocate without bound.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 1, 1024
# Ten-crop upscales by this much, then crops back: each corner crop drops about 11% of the face on
# two sides, close to the 10% shifts of the light training augmentation the models have seen.
TENCROP_SCALE = 1.125


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input.

    Attributes:
        input_size: side of the square input in pixels.
        channels: 1 (grayscale) or 3 (RGB).
        mean, std: per-channel normalisation of pixels scaled to [0, 1].
        resize: for a crop model, the side images are resized to before an `input_size`
            crop is cut from them (random in training, see `tta_views` at test time);
            None: images are resized to `input_size` and fed whole.
    """

    input_size: int = 48
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    resize: int | None = None

    @property
    def pixel_size(self) -> int:
        """The side of the images `to_pixels` makes: `resize` for a crop model, else `input_size`."""
        return self.resize or self.input_size

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not MIN_INPUT_SIZE <= self.input_size <= MAX_INPUT_SIZE:
            raise ValueError(f"input_size must lie in {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} pixels, got {self.input_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need {self.channels} values, got {self.mean} and {self.std}")
        if not all(math.isfinite(v) for v in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            # A zero or NaN here turns every probability into NaN, and NaN's argmax into the first class.
            raise ValueError(f"mean must be finite and std finite and positive, got {self.mean} and {self.std}")
        if self.resize is not None and not self.input_size <= self.resize <= MAX_INPUT_SIZE:
            raise ValueError(f"the crop size {self.input_size} must not exceed the image size {self.resize} "
                             f"(at most {MAX_INPUT_SIZE})")

    def with_channels(self, channels: int) -> Preprocessing:
        """The same preprocessing for another channel count (mean/std averaged or repeated)."""
        if channels == self.channels:
            return self
        mean, std = float(np.mean(self.mean)), float(np.mean(self.std))
        return Preprocessing(self.input_size, channels, (mean,) * channels, (std,) * channels, self.resize)


def to_pixels(
    image: Image.Image, prep: Preprocessing, resample: Image.Resampling = Image.Resampling.BILINEAR
) -> np.ndarray:
    """Convert to the model's mode and pixel size (`Preprocessing.pixel_size`): a uint8 array (C, H, W).

    Args:
        resample: the Pillow filter when the size differs (a model's `Framing.filter`).
    """
    image = image.convert("L" if prep.channels == 1 else "RGB")
    size = (prep.pixel_size, prep.pixel_size)
    if image.size != size:
        image = image.resize(size, resample)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def check_pixels(pixels: np.ndarray, prep: Preprocessing, what: str = "pixels") -> None:
    """Raises: FerlabError: `pixels` (an array or CPU tensor) are not uint8 (N, C, R, R) at the model's pixel size."""
    pixels = np.asarray(pixels)
    expected = (prep.channels, prep.pixel_size, prep.pixel_size)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
        raise FerlabError(f"{what} must be uint8 (N, {', '.join(map(str, expected))}) as to_pixels makes them, "
                          f"got {pixels.dtype} {tuple(pixels.shape)}")


def check_tta(mode: str) -> None:
    """Raises: FerlabError: `mode` is not one of `TTA_MODES`."""
    if mode not in TTA_MODES:
        raise FerlabError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")


def views_per_image(mode: str) -> int:
    """How many views `tta_views` cuts from each image in `mode`, without cutting them.

    Raises:
        FerlabError: an unknown mode.
    """
    check_tta(mode)
    return _VIEWS_PER_IMAGE[mode]


def _crop(pixels: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return pixels[..., top:top + size, left:left + size]


def _centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """torchvision's `center_crop` (the same rounding), so training's validation crops and these agree."""
    side = pixels.shape[-1]
    offset = int(round((side - size) / 2.0))
    return _crop(pixels, offset, offset, size)


def _five_crops(pixels: np.ndarray, size: int) -> list[np.ndarray]:
    """torchvision's `five_crop` order: top-left, top-right, bottom-left, bottom-right, centre."""
    far = pixels.shape[-1] - size
    corners = [_crop(pixels, top, left, size) for top, left in ((0, 0), (0, far), (far, 0), (far, far))]
    return [*corners, _centre_crop(pixels, size)]


def _upscaled(pixels: np.ndarray, side: int) -> np.ndarray:
    """Images (B, C, R, R) resized bilinearly to `side` with OpenCV (C = 1 or 3 fits its channel layout)."""
    resized = [cv2.resize(np.ascontiguousarray(image.transpose(1, 2, 0)), (side, side), interpolation=cv2.INTER_LINEAR)
               for image in pixels]
    return np.stack([r.reshape(side, side, -1).transpose(2, 0, 1) for r in resized]) if resized else \
        np.zeros((0, pixels.shape[1], side, side), dtype=pixels.dtype)


def tta_views(pixels: np.ndarray, mode: str, size: int | None = None) -> list[np.ndarray]:
    """The views of uint8 images (B, C, R, R) that test-time augmentation averages over, each (B, C, S, S) uint8.

    Torch tensors are taken too (as NumPy views of their memory), so training and inference cut the same views.

    Args:
        size: the model's input side S, for a crop model (`Preprocessing.resize`) smaller than R:
            ``none`` is then the centre crop, ``flip`` it and its mirror, ``tencrop`` the four
            corner crops and the centre crop of the images and of their mirrors. None: S = R, and
            ``none`` is the images, ``flip`` they and their mirrors, ``tencrop`` ten crops of the
            images upscaled by `TENCROP_SCALE` (bilinear).

    Raises:
        FerlabError: an unknown mode, or images that are not a batch of squares of side at least S.
    """
    check_tta(mode)
    pixels = np.asarray(pixels)
    side = pixels.shape[-1] if pixels.ndim == 4 else 0
    size = size or side
    if pixels.ndim != 4 or pixels.shape[-2] != side or side < size:
        need = f" with R >= {size}" if size != side else ""
        raise FerlabError(f"test-time augmentation takes square images (B, C, R, R){need}, "
                          f"got shape {tuple(pixels.shape)}")
    if mode == "tencrop":
        larger = pixels if size < side else _upscaled(pixels, round(side * TENCROP_SCALE))
        return [np.ascontiguousarray(view) for view in
                (*_five_crops(larger, size), *_five_crops(larger[..., ::-1], size))]
    centre = np.ascontiguousarray(_centre_crop(pixels, size))
    return [centre] if mode == "none" else [centre, np.ascontiguousarray(centre[..., ::-1])]


def __getattr__(name: str) -> object:
    # `normalize` lived here until 0.1; it needs torch, so it moved to `ferlab.data.tensors` (kept for one release).
    if name == "normalize":
        from ferlab.data.tensors import normalize

        return normalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
