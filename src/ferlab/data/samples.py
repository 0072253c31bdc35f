"""The table of samples that every data source yields."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import Image

from ferlab.data.labels import order_classes

__all__ = ["SPLITS", "Sample", "SampleTable", "source_file_name", "split_name"]

#: Split names; an unsplit sample has split "".
SPLITS: tuple[str, ...] = ("train", "val", "test")

_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}


def split_name(name: str) -> str | None:
    """The canonical split for a folder name or FER2013 Usage value, or None."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def source_file_name(source: str) -> str:
    """The file name in a sample's source: a path, ``archive.zip:member``, or a manifest row's path."""
    return PurePosixPath(source.replace("\\", "/").rsplit(":", 1)[-1]).name


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        source: where the image lives, as shown in messages: a file path,
            ``archive.zip:member``, or ``file.csv:row N``.
        label: canonical emotion name (for soft labels, the majority class).
        split: "train", "val", "test", or "" when the dataset is unsplit.
        box: the face inside the image as (x, y, width, height), when the
            image is a whole photo (ExpW, manifests with boxes); None for crops.
        votes: soft label as (class, share) pairs summing to 1 (FER+ vote
            files); empty for a hard label.
    """

    source: str
    label: str
    split: str
    box: tuple[int, int, int, int] | None = None
    votes: tuple[tuple[str, float], ...] = ()


ImageReader = Callable[[Sample], Image.Image]


class SampleTable:
    """Samples of one dataset plus the reader that opens their images.

    Sources differ only in how they find samples and read bytes; everything
    downstream (splits, datasets, evaluation) works on this table.
    """

    def __init__(self, samples: Sequence[Sample], reader: ImageReader, origin: str) -> None:
        self.samples = list(samples)
        self.origin = origin
        self._reader = reader

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"SampleTable({self.origin!r}, {len(self)} samples, splits={self.split_counts()})"

    def read_image(self, sample: Sample) -> Image.Image:
        """The sample's image, cropped to its face box when it has one."""
        image = self._reader(sample)
        if sample.box is None:
            return image
        x, y, w, h = sample.box
        return image.crop((x, y, x + w, y + h))

    def with_samples(self, samples: Iterable[Sample]) -> SampleTable:
        """A table over other samples of the same dataset (a subset, or re-split copies)."""
        return SampleTable(list(samples), self._reader, self.origin)

    def split(self, name: str) -> SampleTable:
        return self.with_samples(s for s in self.samples if s.split == name)

    def splits(self) -> list[str]:
        """Splits present, in the order train, val, test ("" for unsplit samples last)."""
        present = {s.split for s in self.samples}
        return [name for name in (*SPLITS, "") if name in present]

    def classes(self) -> list[str]:
        return order_classes(s.label for s in self.samples)

    def label_counts(self) -> dict[str, int]:
        counts = collections.Counter(s.label for s in self.samples)
        return {label: counts[label] for label in order_classes(counts)}

    def split_counts(self) -> dict[str, int]:
        counts = collections.Counter(s.split for s in self.samples)
        return {name or "unsplit": counts[name] for name in self.splits()}
