"""The FER2013 CSV: ``emotion,pixels,Usage`` (Kaggle's fer2013.csv) or ``emotion,pixels`` (train.csv/test.csv).

Pixels are parsed once into one uint8 array (35,887 x 48 x 48 is 83 MB), so
reading a sample is an array lookup.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ferlab.data._csv import header_columns
from ferlab.data.labels import DATASET_LABELS
from ferlab.data.samples import Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = ["read_fer2013_csv"]


def _parse_pixels(text: str, where: str) -> np.ndarray:
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        raise FerlabError(f"{where}: pixels must be space-separated integers") from None
    side = math.isqrt(values.size)
    if values.size == 0 or side * side != values.size:
        raise FerlabError(f"{where}: {values.size} pixel values do not form a square image")
    if values.min() < 0 or values.max() > 255:
        raise FerlabError(f"{where}: pixel values must lie in 0-255")
    return values.astype(np.uint8).reshape(side, side)


def _read_one(path: Path) -> tuple[list[Sample], list[np.ndarray]]:
    split_from_name = split_name(path.stem) or ""
    codes = DATASET_LABELS["fer2013"]
    samples: list[Sample] = []
    images: list[np.ndarray] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = header_columns(reader, path, ("emotion", "pixels"), "emotion,pixels[,Usage]")
            for row in reader:
                where = f"{path}:row {reader.line_num}"
                emotion = (row.get(columns["emotion"]) or "").strip()
                if not emotion.isdigit() or int(emotion) not in codes:
                    raise FerlabError(f"{where}: emotion {emotion!r} is not a FER2013 index 0-6")
                label = codes[int(emotion)]
                split = split_from_name
                if "usage" in columns:
                    usage = row.get(columns["usage"]) or ""
                    split = split_name(usage) or ""
                    if not split:
                        raise FerlabError(f"{where}: Usage {usage!r} is not Training, PublicTest or PrivateTest")
                images.append(_parse_pixels(row.get(columns["pixels"]) or "", where))
                samples.append(Sample(where, label, split))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FerlabError(f"cannot read CSV {path}: {err}") from None
    return samples, images


def read_fer2013_csv(paths: Sequence[Path]) -> SampleTable:
    """Samples of one or more FER2013-style CSV files."""
    samples: list[Sample] = []
    images: list[np.ndarray] = []
    for path in paths:
        more_samples, more_images = _read_one(path)
        if not more_samples:
            raise FerlabError(f"{path}: the CSV has no rows")
        samples += more_samples
        images += more_images
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise FerlabError(f"{', '.join(map(str, paths))}: rows hold images of different sizes {sorted(shapes)}")
    pixels = np.stack(images)  # (N, H, W) uint8
    index = {sample.source: i for i, sample in enumerate(samples)}
    origin = str(paths[0]) if len(paths) == 1 else str(paths[0].parent)
    return SampleTable(samples, lambda s: Image.fromarray(pixels[index[s.source]]), origin)
