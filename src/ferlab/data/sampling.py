"""The training sampler: a fresh order every epoch, drawn from (seed, epoch) alone.

Lightning calls `set_epoch` before each epoch, so epoch k's order does not
depend on the epochs before it: a run resumed from a checkpoint at epoch k sees
exactly the batches the uninterrupted run saw. (A DataLoader generator would
restart from epoch 0's order after a resume.) Each index comes with a draw key,
from which `ImageDataset` seeds that sample's augmentation, so the augmented
pixels do not depend on what else used the random generator (Lightning's
prefetching, DataLoader workers) either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[tuple[int, int]]):
    """(dataset index, draw key) pairs in a new random order per epoch.

    Args:
        indices: the pool drawn from, e.g. ``range(len(dataset))`` or an oversampled list with repeats.
        seed: the run's seed.
        weights: when given, `len(indices)` draws with replacement in proportion to these
            per-index weights (a balanced sampler) instead of a permutation.
    """

    def __init__(self, indices: Sequence[int], seed: int, weights: Sequence[float] | None = None) -> None:
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(list(weights), dtype=torch.double)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch_key = self.seed * 100_003 + self.epoch
        generator = torch.Generator().manual_seed(epoch_key)
        if self.weights is None:
            order = torch.randperm(len(self.indices), generator=generator)
        else:
            order = torch.multinomial(self.weights, len(self.indices), replacement=True, generator=generator)
        base = epoch_key * 10_000_019
        return ((index, base + position) for position, index in enumerate(self.indices[order].tolist()))
