"""The PyTorch side of preprocessing: uint8 pixels from `ferlab.data.transforms` to a model's float input.

Kept apart from `transforms` so the inference install, which runs ONNX graphs that
normalise inside themselves, never imports torch.
"""

from __future__ import annotations

import numpy as np
import torch

from ferlab.data.transforms import Preprocessing

__all__ = ["as_tensor", "normalize"]


def as_tensor(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 pixels as a tensor, sharing the array's memory where it can (a negative-stride view is copied)."""
    if isinstance(pixels, torch.Tensor):
        return pixels
    return torch.from_numpy(np.ascontiguousarray(pixels))


def normalize(pixels: np.ndarray | torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """uint8 (..., C, H, W) -> normalised float32."""
    mean = torch.tensor(prep.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32).view(-1, 1, 1)
    return (as_tensor(pixels).float() / 255.0 - mean) / std
