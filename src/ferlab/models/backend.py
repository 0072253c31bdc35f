"""One prediction interface over PyTorch and ONNX Runtime models: pixels in, calibrated probabilities out.

The test-time views (`tta_views`), their averaging and the temperature live here once,
so a model predicts the same way on either runtime; a backend only runs one view.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ferlab.data.transforms import check_pixels, check_tta, tta_views
from ferlab.models.meta import ModelMeta

__all__ = ["ModelBackend"]


class ModelBackend(ABC):
    """A model with its metadata; subclasses implement `view_logits`.

    Attributes:
        meta: the model's metadata (classes, preprocessing, temperature, test-time views).
    """

    meta: ModelMeta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @abstractmethod
    def view_logits(self, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of uint8 views (B, C, S, S) at the model's input size."""

    def resolve_tta(self, tta: str | None) -> str:
        """`tta`, or the model's own (`ModelMeta.tta`) when None.

        Raises:
            FerlabError: an unknown mode.
        """
        mode = self.meta.tta if tta is None else tta
        check_tta(mode)
        return mode

    def predict_logits(self, pixels: torch.Tensor, batch_size: int = 256, tta: str | None = None) -> np.ndarray:
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
        prep = self.meta.preprocessing
        check_pixels(pixels, prep)
        with torch.inference_mode():
            views_per_image = len(tta_views(pixels[:1], mode, prep.input_size)) if len(pixels) else 1
            per_chunk = max(1, batch_size // views_per_image)  # at most `batch_size` views at once
            chunks = [self._averaged(batch, mode) for batch in torch.split(pixels, per_chunk)]  # each (B, classes)
        return torch.cat(chunks).float().numpy() if chunks else np.zeros((0, len(self.classes)), dtype=np.float32)

    def _averaged(self, batch: torch.Tensor, mode: str) -> torch.Tensor:
        """The mean logits (B, classes) over the views of `batch`, run as one batch of V * B views (faster)."""
        views = torch.cat(tta_views(batch, mode, self.meta.preprocessing.input_size))  # (V * B, C, S, S)
        return self.view_logits(views).float().view(-1, len(batch), len(self.classes)).mean(dim=0)

    def predict_proba(self, pixels: torch.Tensor, batch_size: int = 256, tta: str | None = None) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / temperature)``, shape (N, classes); see `predict_logits`."""
        logits = torch.from_numpy(self.predict_logits(pixels, batch_size, tta))
        return torch.softmax(logits / self.meta.temperature, dim=1).numpy()
