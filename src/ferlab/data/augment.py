"""Training augmentation: named presets plus individual knobs, built from torchvision v2.

Per-image transforms work on uint8 (C, H, W) tensors before normalising;
mixup and cutmix mix whole batches, so they are built separately and applied
by the training step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from ferlab.errors import FerlabError

__all__ = ["PRESETS", "AugmentConfig", "SaltAndPepper", "batch_mixing", "build_augmentation", "describe"]

_KNOBS = ("hflip", "rotation", "shift", "zoom", "shear", "brightness", "contrast", "noise", "erasing", "mixup", "cutmix")

#: Knob values of each preset; "light" is what the classic FER notebooks use.
PRESETS: dict[str, dict[str, float]] = {
    "none": dict.fromkeys(_KNOBS, 0.0),
    "light": {**dict.fromkeys(_KNOBS, 0.0), "hflip": 0.5, "rotation": 10, "shift": 0.1, "zoom": 0.1},
    "medium": {
        **dict.fromkeys(_KNOBS, 0.0), "hflip": 0.5, "rotation": 15, "shift": 0.1, "zoom": 0.15, "shear": 8,
        "brightness": 0.25, "contrast": 0.25, "erasing": 0.25,
    },
    "heavy": {
        "hflip": 0.5, "rotation": 20, "shift": 0.15, "zoom": 0.2, "shear": 10, "brightness": 0.4,
        "contrast": 0.4, "noise": 0.02, "erasing": 0.5, "mixup": 0.2, "cutmix": 1.0,
    },
}


@dataclass
class AugmentConfig:
    """A preset, with any knob overridden (None keeps the preset's value).

    Attributes:
        preset: none, light, medium or heavy.
        hflip: probability of a horizontal mirror.
        rotation: maximum rotation in degrees.
        shift: maximum translation as a fraction of the side.
        zoom: maximum scale change (0.1 means 0.9-1.1).
        shear: maximum shear in degrees.
        brightness, contrast: jitter factors (0.3 means 0.7-1.3).
        noise: fraction of pixels set to black or white (salt and pepper).
        erasing: probability of erasing a random rectangle.
        mixup, cutmix: Beta(alpha, alpha) of batch mixing; 0 turns it off.
            With both on, each batch uses one of them.
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
    mixup: float | None = None
    cutmix: float | None = None

    def resolved(self) -> dict[str, float]:
        """Every knob's value: the preset's, overridden by the knobs that are set.

        Raises:
            FerlabError: an unknown preset or a negative knob (named).
        """
        if self.preset not in PRESETS:
            raise FerlabError(f"unknown augmentation preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[self.preset])
        values.update({k: float(v) for k in _KNOBS if (v := getattr(self, k)) is not None})
        for knob in ("hflip", "noise", "erasing"):
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
    if k["noise"]:
        steps.append(SaltAndPepper(k["noise"]))
    if k["erasing"]:
        steps.append(v2.RandomErasing(p=k["erasing"]))
    return v2.Compose(steps) if steps else None


def batch_mixing(config: AugmentConfig, num_classes: int) -> v2.Transform | None:
    """Mixup and/or cutmix over (images, integer targets) batches; returns soft targets (B, classes)."""
    k = config.resolved()
    mixes = [
        mix(alpha=k[name], num_classes=num_classes)
        for name, mix in (("mixup", v2.MixUp), ("cutmix", v2.CutMix))
        if k[name]
    ]
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def describe(config: AugmentConfig) -> str:
    """One line naming the active knobs, for logs and plot titles."""
    values = config.resolved()
    active = [f"{k}={v:g}" for k, v in values.items() if v]
    return f"{config.preset}: " + (", ".join(active) if active else "no augmentation")

