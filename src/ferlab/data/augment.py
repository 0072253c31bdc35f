"""Training augmentation: named presets plus individual knobs, built from torchvision v2.

Per-image transforms work on uint8 (C, H, W) tensors before normalising;
mixup and cutmix mix whole batches, so they are built separately and applied
by the training step.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ferlab.errors import FerlabError

__all__ = ["PRESETS", "AugmentConfig", "JpegArtefacts", "LowResolution", "RandomGamma", "SaltAndPepper", "batch_mixing", "build_augmentation", "describe"]

_KNOBS = ("hflip", "rotation", "shift", "zoom", "shear", "brightness", "contrast", "noise", "erasing",
          "blur", "lowres", "jpeg", "gamma", "grayscale", "mixup", "cutmix", "mix_prob")
_PROBABILITIES = ("hflip", "noise", "erasing", "blur", "lowres", "jpeg", "grayscale", "mix_prob")

#: Knob values of each preset; "light" is what the classic FER notebooks use. "photo" prepares a model
#: for faces cut from real photos (`ferlab predict`, video, the web app): the crop's scale and position
#: jitter around the stored framing, and the blur, low resolution, JPEG artefacts and lighting of
#: phone and web photos. Use it when the model will see detected faces rather than curated crops.
_OFF = {**dict.fromkeys(_KNOBS, 0.0), "mix_prob": 1.0}  # mix_prob: the share of batches mixed once mixup or cutmix is on
PRESETS: dict[str, dict[str, float]] = {
    "none": dict(_OFF),
    "light": {**_OFF, "hflip": 0.5, "rotation": 10, "shift": 0.1, "zoom": 0.1},
    "medium": {
        **_OFF, "hflip": 0.5, "rotation": 15, "shift": 0.1, "zoom": 0.15, "shear": 8,
        "brightness": 0.25, "contrast": 0.25, "erasing": 0.25,
    },
    "heavy": {
        **_OFF, "hflip": 0.5, "rotation": 20, "shift": 0.15, "zoom": 0.2, "shear": 10, "brightness": 0.4,
        "contrast": 0.4, "noise": 0.02, "erasing": 0.5, "mixup": 0.2, "cutmix": 1.0, "mix_prob": 0.5,
    },
    "photo": {
        **_OFF, "hflip": 0.5, "rotation": 10, "shift": 0.08, "zoom": 0.15, "brightness": 0.3, "contrast": 0.3,
        "blur": 0.3, "lowres": 0.3, "jpeg": 0.3, "gamma": 0.4, "grayscale": 0.2,
    },
}
# Ranges of the photo knobs when they fire: blur sigma, the downscale factor, JPEG quality.
BLUR_SIGMA = (0.3, 1.5)
LOWRES_FACTOR = (1.5, 3.0)
JPEG_QUALITY = (30, 90)


@dataclass
class AugmentConfig:
    """A preset, with any knob overridden (None keeps the preset's value).

    Attributes:
        preset: none, light, medium, heavy or photo (see `PRESETS`).
        hflip: probability of a horizontal mirror.
        rotation: maximum rotation in degrees.
        shift: maximum translation as a fraction of the side.
        zoom: maximum scale change (0.1 means 0.9-1.1).
        shear: maximum shear in degrees.
        brightness, contrast: jitter factors (0.3 means 0.7-1.3).
        noise: fraction of pixels set to black or white (salt and pepper).
        erasing: probability of erasing a random rectangle.
        blur: probability of a Gaussian blur (sigma `BLUR_SIGMA`).
        lowres: probability of shrinking the image by a factor in `LOWRES_FACTOR` and enlarging it back.
        jpeg: probability of re-encoding as JPEG at a quality in `JPEG_QUALITY`.
        gamma: largest change of log-gamma (0.4: gamma in 0.67-1.49).
        grayscale: probability of turning an RGB image gray (a gray one is left alone).
        mixup, cutmix: the alpha of Beta(alpha, alpha), how strongly two images mix; 0 turns it off.
            With both on, each mixed batch uses one of them.
        mix_prob: probability that a batch is mixed at all (mixup or cutmix).
    """

    preset: str = "light"
    hflip: float | None = None
    rotation: float | None = None
    shift: float | None = None
    zoom: float | None = None
    shear: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    noise: float | None = None
    erasing: float | None = None
    blur: float | None = None
    lowres: float | None = None
    jpeg: float | None = None
    gamma: float | None = None
    grayscale: float | None = None
    mixup: float | None = None
    cutmix: float | None = None
    mix_prob: float | None = None

    def resolved(self) -> dict[str, float]:
        """Every knob's value: the preset's, overridden by the knobs that are set.

        Raises:
            FerlabError: an unknown preset or a negative knob (named).
        """
        if self.preset not in PRESETS:
            raise FerlabError(f"unknown augmentation preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[self.preset])
        values.update({k: float(v) for k in _KNOBS if (v := getattr(self, k)) is not None})
        for knob in _PROBABILITIES:
            if not 0 <= values[knob] <= 1:
                raise FerlabError(f"augmentation knob {knob} is a probability or fraction in [0, 1], got {values[knob]}")
        bad = [k for k, v in values.items() if v < 0]
        if bad:
            raise FerlabError(f"augmentation knobs {bad} must not be negative")
        return values

    @classmethod
    def parse(cls, text: str) -> AugmentConfig:
        """``"heavy"`` or ``"light,rotation=20,mixup=0.2"`` (the CLI's form).

        Raises:
            FerlabError: an unknown knob or a value that is not a number.
        """
        preset, *knobs = [part.strip() for part in text.split(",")]
        values: dict[str, float] = {}
        for knob in knobs:
            name, _, value = knob.partition("=")
            if name not in _KNOBS:
                raise FerlabError(f"unknown augmentation knob {name!r}; known: {', '.join(_KNOBS)}")
            try:
                values[name] = float(value)
            except ValueError:
                raise FerlabError(f"augmentation knob {name} needs a number, got {value!r}") from None
        config = cls(preset=preset, **values)
        config.resolved()
        return config


class LowResolution(v2.Transform):
    """Shrinks a uint8 (C, H, W) image by a random factor and enlarges it back: the softness of a small face
    in a photo. torchvision has no such transform (Resize alone changes the size)."""

    def __init__(self, factor: tuple[float, float]) -> None:
        super().__init__()
        self.factor = factor

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:
        height, width = inpt.shape[-2:]
        factor = float(torch.empty(1).uniform_(*self.factor))
        small = [max(1, round(height / factor)), max(1, round(width / factor))]
        return TF.resize(TF.resize(inpt, small, antialias=True), [height, width], antialias=False)


class RandomGamma(v2.Transform):
    """Gamma drawn log-uniformly in exp(+-`spread`): under- and over-exposed photos (torchvision has only the function)."""

    def __init__(self, spread: float) -> None:
        super().__init__()
        self.spread = spread

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:
        return TF.adjust_gamma(inpt, math.exp(float(torch.empty(1).uniform_(-self.spread, self.spread))))


class JpegArtefacts(v2.Transform):
    """Re-encodes a uint8 (C, H, W) image as JPEG at a random quality, through Pillow: torchvision's own
    JPEG transform uses its image codecs, deprecated since torchvision 0.29."""

    def __init__(self, quality: tuple[int, int]) -> None:
        super().__init__()
        self.quality = quality

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:
        quality = int(torch.randint(self.quality[0], self.quality[1] + 1, ()))
        array = inpt.permute(1, 2, 0).numpy()  # (H, W, C)
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        return torch.from_numpy(decoded.reshape(array.shape).copy()).permute(2, 0, 1)


class SaltAndPepper(v2.Transform):
    """Sets a random `amount` of pixels to black or white (torchvision has Gaussian noise only)."""

    def __init__(self, amount: float) -> None:
        super().__init__()
        self.amount = amount

    def transform(self, inpt: torch.Tensor, params: dict) -> torch.Tensor:
        # (C, H, W) uint8; one mask per pixel position, shared by the channels
        hit = torch.rand(inpt.shape[-2:]) < self.amount
        white = torch.rand(inpt.shape[-2:]) < 0.5
        out = inpt.clone()
        out[..., hit & white] = 255
        out[..., hit & ~white] = 0
        return out


def build_augmentation(config: AugmentConfig) -> v2.Transform | None:
    """The per-image transform of `config` on uint8 (C, H, W) tensors, or None when it does nothing."""
    k = config.resolved()
    steps: list[v2.Transform] = []
    if k["hflip"]:
        steps.append(v2.RandomHorizontalFlip(k["hflip"]))
    if k["rotation"] or k["shift"] or k["zoom"] or k["shear"]:
        steps.append(v2.RandomAffine(
            degrees=k["rotation"],
            translate=(k["shift"], k["shift"]) if k["shift"] else None,
            scale=(1 - k["zoom"], 1 + k["zoom"]) if k["zoom"] else None,
            shear=k["shear"] or None,
        ))
    if k["brightness"] or k["contrast"]:
        steps.append(v2.ColorJitter(brightness=k["brightness"] or None, contrast=k["contrast"] or None))
    steps += _photo_steps(k)
    if k["noise"]:
        steps.append(SaltAndPepper(k["noise"]))
    if k["erasing"]:
        steps.append(v2.RandomErasing(p=k["erasing"]))
    return v2.Compose(steps) if steps else None


def _photo_steps(k: dict[str, float]) -> list[v2.Transform]:
    """The photo knobs' transforms, each applied with its probability (gamma always, within its range)."""
    steps: list[v2.Transform] = []
    if k["grayscale"]:
        steps.append(v2.RandomGrayscale(k["grayscale"]))
    if k["gamma"]:
        steps.append(RandomGamma(k["gamma"]))
    chances = (("blur", v2.GaussianBlur(5, BLUR_SIGMA)), ("lowres", LowResolution(LOWRES_FACTOR)),
               ("jpeg", JpegArtefacts(JPEG_QUALITY)))
    steps += [v2.RandomApply([step], p=k[name]) for name, step in chances if k[name]]
    return steps


def batch_mixing(config: AugmentConfig, num_classes: int) -> v2.Transform | None:
    """Mixup and/or cutmix over (images, integer targets) batches, `mix_prob` of them; None when off.

    A mixed batch gets soft targets (B, classes), an unmixed one keeps its class indices; the
    loss takes either.
    """
    k = config.resolved()
    mixes = [
        mix(alpha=k[name], num_classes=num_classes)
        for name, mix in (("mixup", v2.MixUp), ("cutmix", v2.CutMix))
        if k[name]
    ]
    if not mixes or not k["mix_prob"]:
        return None
    mixing = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
    return mixing if k["mix_prob"] == 1 else v2.RandomApply([mixing], p=k["mix_prob"])


def describe(config: AugmentConfig) -> str:
    """One line naming the active knobs, for logs and plot titles."""
    values = config.resolved()
    if not (values["mixup"] or values["cutmix"]):
        del values["mix_prob"]  # a share of nothing
    active = [f"{k}={v:g}" for k, v in values.items() if v]
    return f"{config.preset}: " + (", ".join(active) if active else "no augmentation")

