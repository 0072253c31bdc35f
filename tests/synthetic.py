"""A small synthetic FER-like dataset whose classes differ visibly, written in every supported format.

Each class is a bright horizontal band at its own height (top, middle, bottom)
on a noisy background: mirror-invariant, so training augmentation keeps it
learnable, and easy enough that a few epochs beat chance by far.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("angry", "happy", "neutral")
SPLIT_SIZES = {"train": 40, "val": 10, "test": 10}
FER_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FER_INDEX = {"angry": 0, "happy": 3, "neutral": 6}
SIZE = 48


def make_image(label: str, rng: np.random.Generator) -> np.ndarray:
    image = rng.normal(70, 25, (SIZE, SIZE))
    centre = (8, 24, 40)[CLASSES.index(label)] + rng.integers(-2, 3)
    image[max(centre - 4, 0): centre + 4, 6:42] += 140
    return np.clip(image, 0, 255).astype(np.uint8)


def make_samples(seed: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """(split, label, image) triples, in a fixed order."""
    rng = np.random.default_rng(seed)
    return [
        (split, label, make_image(label, rng))
        for split, n in SPLIT_SIZES.items()
        for label in CLASSES
        for _ in range(n)
    ]


def write_tree(samples: list[tuple[str, str, np.ndarray]], root: Path, split: bool = True) -> Path:
    """PNG class folders (lossless, so every format holds identical pixels)."""
    for i, (split_name, label, image) in enumerate(samples):
        folder = root / split_name / label if split else root / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img_{i:04d}.png")
    return root


def write_zip(tree: Path, path: Path, wrapper: str = "dataset") -> Path:
    """The tree inside a zip, under one wrapper folder as downloads often have."""
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(tree.rglob("*")):
            archive.write(file, f"{wrapper}/{file.relative_to(tree).as_posix()}")
    return path


def write_fer_csv(samples: list[tuple[str, str, np.ndarray]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for split, label, image in samples:
            writer.writerow([FER_INDEX[label], " ".join(map(str, image.ravel())), FER_USAGE[split]])
    return path
