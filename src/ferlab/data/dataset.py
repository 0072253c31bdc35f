"""A torch Dataset over a SampleTable."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ferlab.data.samples import SampleTable
from ferlab.data.transforms import Preprocessing, normalize, to_pixels
from ferlab.errors import FerlabError

__all__ = ["ImageDataset"]


class ImageDataset(Dataset):
    """(normalised image, class index) pairs.

    Every image is decoded once, up front, into one uint8 tensor at the model's
    input size: bad files fail before training starts, and later epochs cost
    no decoding (FER2013's 28k training crops take 66 MB). Only tensors are kept,
    so DataLoader workers never need to pickle the table's reader.

    Args:
        table: the samples.
        classes: class names; a sample's target is its label's index here.
        prep: the model's preprocessing.
        augment: a transform of uint8 (C, H, W) tensors applied before normalising.
    """

    def __init__(
        self,
        table: SampleTable,
        classes: Sequence[str],
        prep: Preprocessing,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({s.label for s in table.samples} - set(index))
        if unknown:
            raise FerlabError(f"{table.origin}: classes {unknown} are not among {list(classes)}")
        self.prep = prep
        self.augment = augment
        self.targets = torch.tensor([index[s.label] for s in table.samples], dtype=torch.long)
        self.pixels = torch.empty((len(table), prep.channels, prep.input_size, prep.input_size), dtype=torch.uint8)
        for i, sample in enumerate(tqdm(table.samples, desc=f"decoding {len(table)} images", unit="img", disable=None, leave=False)):
            self.pixels[i] = to_pixels(table.read_image(sample), prep)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.pixels[i]
        if self.augment is not None:
            pixels = self.augment(pixels)
        return normalize(pixels, self.prep), self.targets[i]
