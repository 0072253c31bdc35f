"""Classifying face-crop images with a trained model (face detection comes later)."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ferlab._io import write_csv, write_json
from ferlab.data.images import decode_image, is_image_name
from ferlab.data.transforms import check_tta, to_pixels
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, load_model

__all__ = ["ImageInput", "Prediction", "Predictor", "expand_inputs", "predict_files"]

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image."""

    source: str
    label: str
    probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label, "probs": self.probs}


def _as_image(item: ImageInput, position: int) -> tuple[Image.Image, str]:
    if isinstance(item, Image.Image):
        return item, f"<image {position}>"
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise FerlabError(f"array {position}: expected uint8 (H, W) or (H, W, 3) RGB, got {item.dtype} {item.shape}")
        return Image.fromarray(item), f"<array {position}>"
    path = Path(item)
    if not path.is_file():
        raise FerlabError(f"no such image file: {path}")
    return decode_image(path, str(path)), str(path)


class Predictor:
    """Batched classification of face crops with the model's own preprocessing and temperature.

    Args:
        tta: test-time augmentation, ``none``, ``flip`` or ``tencrop`` (see `ferlab.data.transforms.tta_views`).

    Raises:
        FerlabError: an unknown `tta`.
    """

    def __init__(self, model: LoadedModel, tta: str = "none") -> None:
        check_tta(tta)
        self.model = model
        self.tta = tta

    @classmethod
    def from_path(cls, path: str | Path, tta: str = "none") -> Predictor:
        return cls(load_model(path), tta)

    def predict(self, images: Sequence[ImageInput]) -> list[Prediction]:
        """One Prediction per image: paths, PIL images or uint8 arrays (RGB), in one batch."""
        decoded = [_as_image(item, i) for i, item in enumerate(images)]
        if not decoded:
            return []
        pixels = torch.stack([to_pixels(image, self.model.meta.preprocessing) for image, _ in decoded])
        probs = self.model.predict_proba(pixels, tta=self.tta)
        classes = self.model.classes
        return [
            Prediction(source, classes[int(p.argmax())], {c: float(v) for c, v in zip(classes, p)})
            for (_, source), p in zip(decoded, probs)
        ]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for images; glob patterns expanded.

    Raises:
        FerlabError: a path that does not exist, or a folder or pattern with no images.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
            if not images:
                raise FerlabError(f"folder {path} holds no images")
            found += images
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise FerlabError(f"no files match {item}")
            found += matches
        else:
            raise FerlabError(f"no such file or folder: {path}")
    return found


def predict_files(
    model: str | Path | LoadedModel,
    inputs: Sequence[str | Path],
    out: str | Path,
    batch_size: int = 256,
    tta: str = "none",
) -> list[Prediction]:
    """Classify image files, folders or globs; write ``predictions.csv`` and ``predictions.json`` to `out`.

    Args:
        tta: test-time augmentation, as in `Predictor`.
    """
    predictor = Predictor(model if isinstance(model, LoadedModel) else load_model(model), tta)
    paths = expand_inputs(inputs)
    predictions = [
        prediction
        for start in range(0, len(paths), batch_size)
        for prediction in predictor.predict(paths[start:start + batch_size])
    ]
    classes = list(predictor.model.classes)
    out = Path(out)
    write_json(out / "predictions.json",
               {"classes": classes, "tta": tta, "predictions": [p.to_dict() for p in predictions]})
    write_csv(
        out / "predictions.csv",
        [{"source": p.source, "label": p.label, **{c: round(p.probs[c], 6) for c in classes}} for p in predictions],
        ["source", "label", *classes],
    )
    return predictions
