"""Counter-measures for class imbalance (FER2013: 7,215 happy vs 436 disgust training images).

Three families, chosen in training by `BALANCING`:
- loss weights: inverse frequency, or the effective number of samples
  (Cui et al., CVPR 2019), which weighs the rarest classes less extremely;
- a weighted sampler that draws every class equally often (with replacement);
- oversampling: the rare classes' images repeated up to the largest class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ferlab.data.sampling import EpochSampler
from ferlab.errors import FerlabError

__all__ = ["BALANCING", "balanced_sampler", "class_weights", "oversample_indices"]

#: Values of the training option `data.balance`.
BALANCING = ("none", "inverse", "effective", "sampler", "oversample")


def _class_counts(targets: Sequence[int] | torch.Tensor, num_classes: int) -> np.ndarray:
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        raise FerlabError(f"cannot balance classes with no training samples (class indices {np.flatnonzero(counts == 0).tolist()})")
    return counts


def class_weights(
    targets: Sequence[int] | torch.Tensor, num_classes: int, method: str = "inverse", beta: float = 0.999
) -> torch.Tensor:
    """Per-class loss weights averaging 1 over the samples' classes (so the loss scale is unchanged for balanced data).

    Args:
        method: "inverse" (scikit-learn's "balanced": n / (classes * count)) or
            "effective" ((1 - beta) / (1 - beta**count), normalised the same way).
    """
    counts = _class_counts(targets, num_classes)
    if method == "inverse":
        weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(targets))
    elif method == "effective":
        raw = (1 - beta) / (1 - np.power(beta, counts))
        weights = raw * num_classes / raw.sum()
    else:
        raise FerlabError(f"unknown class-weight method {method!r}; choose inverse or effective")
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sampler(targets: Sequence[int] | torch.Tensor, num_classes: int, seed: int) -> EpochSampler:
    """Draws len(targets) samples per epoch with replacement, every class with equal probability."""
    counts = _class_counts(targets, num_classes)
    weights = 1.0 / counts[np.asarray(targets, dtype=np.int64)]
    return EpochSampler(range(len(weights)), seed, weights=weights.tolist())


def oversample_indices(targets: Sequence[int] | torch.Tensor, num_classes: int, seed: int) -> np.ndarray:
    """Indices where every class appears as often as the largest: all of its own, then random repeats."""
    targets = np.asarray(targets, dtype=np.int64)
    counts = _class_counts(targets, num_classes)
    rng = np.random.default_rng(seed)
    parts = []
    for c in range(num_classes):
        own = np.flatnonzero(targets == c)
        parts += [own, rng.choice(own, size=counts.max() - len(own), replace=True)]
    return np.concatenate(parts)
