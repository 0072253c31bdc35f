"""A torch Dataset over a SampleTable, decoded once (optionally cached on disk)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ferlab.data.cache import content_key, load_pixels, save_pixels
from ferlab.data.samples import Sample, SampleTable
from ferlab.data.tensors import normalize
from ferlab.data.transforms import Preprocessing, to_pixels
from ferlab.errors import FerlabError

__all__ = ["ImageDataset", "decode_table"]

log = logging.getLogger(__name__)


def _decode_all(table: SampleTable, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.zeros((len(table), prep.channels, prep.pixel_size, prep.pixel_size), dtype=np.uint8)
    ok = np.zeros(len(table), dtype=bool)
    for i, sample in enumerate(tqdm(table.samples, desc=f"decoding {len(table)} images", unit="img", disable=None, leave=False)):
        try:
            pixels[i] = to_pixels(table.read_image(sample), prep)
            ok[i] = True
        except FerlabError as err:
            log.warning("skipping %s", err)
    return pixels, ok


def decode_table(
    table: SampleTable, prep: Preprocessing, cache_dir: str | Path | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """Every image as uint8 (N, C, R, R) at the model's pixel size, and a mask of those that decoded.

    A file that cannot be read is skipped with one warning; decoding happens
    here, before training, so a corrupt file can never stop an epoch. With
    `cache_dir`, the result is stored under a content key and reused by later
    runs on the same images.
    """
    key = content_key(table, prep) if cache_dir is not None else None
    cached = load_pixels(cache_dir, key) if key else None
    if cached is not None:
        pixels, ok = cached
        log.info("%s: %d decoded images from the cache %s", table.origin, len(table), cache_dir)
    else:
        pixels, ok = _decode_all(table, prep)
        if key:
            save_pixels(cache_dir, key, pixels, ok)
    return torch.from_numpy(pixels), ok


class ImageDataset(Dataset):
    """(normalised image, target) pairs over the readable samples of a table.

    Every image is decoded once, up front, into one uint8 tensor at the model's
    input size (FER2013's 28k training crops take 66 MB), so later epochs do
    no decoding. Only tensors are kept, so DataLoader workers never need to
    pickle the table's reader.

    Attributes:
        samples: the samples kept, aligned with `pixels` and `targets`.
        skipped: sources of the samples that could not be decoded.
        targets: class index of each sample (the majority class for soft labels).
        soft_targets: (N, classes) float shares when any sample has votes, else None.

    Args:
        table: the samples.
        classes: class names; a sample's target is its label's index here.
        prep: the model's preprocessing.
        augment: a transform of uint8 (C, H, W) tensors applied before normalising. A crop model
            (`Preprocessing.resize`) gets a random `input_size` crop after it, or the centre crop
            without `augment` (a validation set), so that every item has the model's input size.
        cache_dir: where decoded pixels are cached across runs (None: memory only).
        decode: turns the table into uint8 pixels and a mask of the samples that have them;
            `decode_table` by default (each image is a crop), or one that finds faces in photos
            (`ferlab.inference.photos.FaceDecoder`, which caches nothing).
    """

    def __init__(
        self,
        table: SampleTable,
        classes: Sequence[str],
        prep: Preprocessing,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        cache_dir: str | Path | None = None,
        decode: Callable[[SampleTable, Preprocessing], tuple[torch.Tensor, np.ndarray]] | None = None,
    ) -> None:
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({s.label for s in table.samples} - set(index))
        if unknown:
            raise FerlabError(f"{table.origin}: classes {unknown} are not among {list(classes)}")
        self.prep = prep
        self.augment = _with_crop(augment, prep)
        pixels, ok = decode_table(table, prep, cache_dir) if decode is None else decode(table, prep)
        self.samples: list[Sample] = [s for s, good in zip(table.samples, ok) if good]
        self.skipped: list[str] = [s.source for s, good in zip(table.samples, ok) if not good]
        if self.skipped and decode is None:  # another decoder reports what it left out itself
            log.warning("%s: skipped %d of %d images that could not be read", table.origin, len(self.skipped), len(table))
        if table.samples and not self.samples:
            raise FerlabError(f"{table.origin}: none of the {len(table)} images could be read")
        self.pixels = pixels[torch.from_numpy(ok)]
        self.targets = torch.tensor([index[s.label] for s in self.samples], dtype=torch.long)
        self.soft_targets = _soft_targets(self.samples, index) if any(s.votes for s in self.samples) else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`item` is an index, or (index, draw key) from `EpochSampler`: the key then seeds the augmentation."""
        i, key = item if isinstance(item, tuple) else (item, None)
        pixels = self.pixels[i]
        if self.augment is not None and key is not None:
            with torch.random.fork_rng(devices=[]):
                # The CPU generator alone: torch.manual_seed also queues a CUDA, XPU and MTIA seeding, each
                # recording a stack trace, which made seeding cost about 1 ms per image (30% of an epoch).
                torch.default_generator.manual_seed(key % 2**63)
                pixels = self.augment(pixels)
        elif self.augment is not None:
            pixels = self.augment(pixels)
        target = self.targets[i] if self.soft_targets is None else self.soft_targets[i]
        return normalize(pixels, self.prep), target


def _with_crop(
    augment: Callable[[torch.Tensor], torch.Tensor] | None, prep: Preprocessing
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """`augment` then the crop a crop model trains on (random) or is validated on (the centre)."""
    if prep.resize is None or prep.resize == prep.input_size:
        return augment
    if augment is None:
        return v2.CenterCrop(prep.input_size)
    return v2.Compose([augment, v2.RandomCrop(prep.input_size)])


def _soft_targets(samples: Sequence[Sample], index: dict[str, int]) -> torch.Tensor:
    """Vote shares over the classes (renormalised over those kept); a hard label becomes one-hot."""
    soft = torch.zeros((len(samples), len(index)), dtype=torch.float32)
    for i, sample in enumerate(samples):
        for label, share in sample.votes or ((sample.label, 1.0),):
            if label in index:
                soft[i, index[label]] += share
    return soft / soft.sum(dim=1, keepdim=True)
