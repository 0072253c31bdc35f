"""A picture of what an augmentation setting does to real images, to judge its strength before training."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ferlab.data.augment import AugmentConfig, batch_mixing, build_augmentation, describe
from ferlab.data.plots import plot_image_grid
from ferlab.data.samples import SampleTable
from ferlab.data.transforms import Preprocessing, to_pixels
from ferlab.errors import FerlabError

__all__ = ["preview_augmentation"]


def preview_augmentation(
    table: SampleTable,
    config: AugmentConfig,
    path: str | Path,
    *,
    prep: Preprocessing = Preprocessing(),
    images: int = 6,
    variants: int = 7,
    seed: int = 0,
) -> Path:
    """A PNG grid: each row one random image, first as the model sees it, then `variants` augmented draws.

    Batch mixing (mixup/cutmix) is applied across the rows of each column, as in training.
    """
    rng = random.Random(seed)
    chosen = rng.sample(table.samples, min(images, len(table)))
    originals, labels = [], []
    for sample in chosen:
        try:
            originals.append(to_pixels(table.read_image(sample), prep))
            labels.append(sample.label)
        except FerlabError:
            continue
    if not originals:
        raise FerlabError(f"{table.origin}: none of the {len(chosen)} images drawn for the preview could be read")
    torch.manual_seed(seed)
    transform = build_augmentation(config)
    mixing = batch_mixing(config, len(labels))
    batch = torch.from_numpy(np.stack(originals))  # (N, C, H, W) uint8
    columns = [batch]
    for _ in range(variants):
        out = torch.stack([transform(image) for image in batch]) if transform else batch.clone()
        if mixing is not None:
            mixed, _ = mixing(out.float(), torch.arange(len(out)))
            out = mixed.round().clamp(0, 255).to(torch.uint8)
        columns.append(out)
    rows = [[_displayable(column[i]) for column in columns] for i in range(len(batch))]
    return plot_image_grid(rows, labels, path, title=f"augmentation {describe(config)}",
                           column_labels=["input", *[f"draw {k + 1}" for k in range(variants)]])


def _displayable(pixels: torch.Tensor):
    """(C, H, W) uint8 -> (H, W) or (H, W, 3) numpy for imshow."""
    array = pixels.permute(1, 2, 0).numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array
