"""One prediction interface over PyTorch and ONNX Runtime models: pixels in, calibrated probabilities out.

The test-time views (`tta_views`), their averaging and the temperature live here once,
so a model predicts the same way on either runtime; a backend only runs one view.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ferlab.data.transforms import check_pixels, check_tta, tta_views, views_per_image
from ferlab.models.meta import ModelMeta

__all__ = ["ModelBackend", "softmax"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` in float64, stable for large logits, returned as float32."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True) if len(scaled) else 0.0
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class ModelBackend(ABC):
    """A model with its metadata; subclasses implement `view_logits`.

    Pixels are NumPy arrays, so the ONNX Runtime backend needs no torch; a CPU torch
    tensor is taken too (read through `np.asarray`, without a copy).

    Attributes:
        meta: the model's metadata (classes, preprocessing, temperature, test-time views).
    """

    meta: ModelMeta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @abstractmethod
    def view_logits(self, views: np.ndarray) -> np.ndarray:
        """Logits (B, classes), float32, of uint8 views (B, C, S, S) at the model's input size."""

    def resolve_tta(self, tta: str | None) -> str:
        """`tta`, or the model's own (`ModelMeta.tta`) when None.

        Raises:
            FerlabError: an unknown mode.
        """
        mode = self.meta.tta if tta is None else tta
        check_tta(mode)
        return mode

    def predict_logits(self, pixels: Any, batch_size: int = 256, tta: str | None = None) -> np.ndarray:
        """Raw logits (N, classes) for uint8 images (N, C, R, R) made by `to_pixels`, before temperature.

        Args:
            batch_size: views run at once (images and their test-time views together).
            tta: test-time augmentation (see `tta_views`), None: the model's own; the logits are
                averaged over its views. For a mean or vote ensemble the logits are
                log-probabilities, so this is a geometric mean of the views' probabilities.

        Raises:
            FerlabError: an unknown `tta`, or pixels that are not uint8 at the model's pixel size.
        """
        mode = self.resolve_tta(tta)
        pixels = np.asarray(pixels)
        check_pixels(pixels, self.meta.preprocessing)
        if not len(pixels):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        per_chunk = max(1, batch_size // views_per_image(mode))  # at most `batch_size` views at once
        if len(pixels) <= per_chunk:
            return self._averaged(pixels, mode)  # one chunk: no copy (batch 1 is a video's or an API's call)
        return np.concatenate([self._averaged(pixels[start:start + per_chunk], mode)
                               for start in range(0, len(pixels), per_chunk)])

    def _averaged(self, batch: np.ndarray, mode: str) -> np.ndarray:
        """The mean logits (B, classes) over the views of `batch`, run as one batch of V * B views (faster)."""
        views = tta_views(batch, mode, self.meta.preprocessing.input_size)
        if len(views) == 1:
            return np.asarray(self.view_logits(views[0]), dtype=np.float32)
        logits = np.asarray(self.view_logits(np.concatenate(views)), dtype=np.float32)  # (V * B, classes)
        return logits.reshape(len(views), len(batch), len(self.classes)).mean(axis=0)

    def predict_proba(self, pixels: Any, batch_size: int = 256, tta: str | None = None) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / temperature)``, shape (N, classes); see `predict_logits`."""
        return softmax(self.predict_logits(pixels, batch_size, tta), self.meta.temperature)
