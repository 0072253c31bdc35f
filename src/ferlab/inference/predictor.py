"""The entry points before `Recognizer` became the one way to predict, kept for one release (deprecated)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ferlab.inference.detect import DEFAULT_DETECTOR, Detector
from ferlab.inference.files import FilePredictions, expand_inputs
from ferlab.inference.recognizer import Classifier, Recognizer
from ferlab.inference.results import Prediction

__all__ = ["FilePredictions", "ImageInput", "Prediction", "Predictor", "expand_inputs", "predict_files"]

ImageInput = str | Path | Image.Image | np.ndarray


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and goes in the next release; use {new}", DeprecationWarning, stacklevel=3)


class Predictor:
    """Deprecated: ``Recognizer(model, "none", backend="torch")``, whose `predict_files` and `recognize_batch` replace it."""

    def __init__(self, model: Any, tta: str | None = None) -> None:
        _deprecated("Predictor", 'Recognizer(model, "none")')
        self.recognizer = Recognizer(model, "none", backend="torch", tta=tta)

    @property
    def model(self) -> Classifier:
        return self.recognizer.model

    @classmethod
    def from_path(cls, path: str | Path, tta: str | None = None) -> Predictor:
        return cls(path, tta)

    def predict(self, images: Sequence[ImageInput]) -> list[Prediction]:
        """One Prediction per image, in one batch."""
        results = self.recognizer.recognize_batch(images)
        return [Prediction(r.face, r.label, r.probs, str(item) if isinstance(item, (str, Path)) else f"<image {i}>")
                for i, (item, (r,)) in enumerate(zip(images, results))]


def predict_files(
    model: str | Path | Classifier,
    inputs: Sequence[str | Path],
    out: str | Path | None,
    *,
    detector: str | Detector = DEFAULT_DETECTOR,
    detector_path: str | Path | None = None,
    backend: str = "auto",
    tta: str | None = None,
    margin: float | None = None,
    batch_size: int = 32,
) -> FilePredictions:
    """Deprecated: ``Recognizer(model, detector, ...).predict_files(inputs, out)``."""
    _deprecated("predict_files", "Recognizer(...).predict_files(inputs, out)")
    expand_inputs(inputs)  # before the model: a mistyped path fails at once, not after the load
    recognizer = Recognizer(model, detector, backend=backend, tta=tta, detector_path=detector_path, margin=margin)
    return recognizer.predict_files(inputs, out, batch_size=batch_size)
