"""What a dataset holds: counts per split and class, imbalance, and sample images."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from ferlab._io import write_json, write_text
from ferlab.data.plots import plot_class_counts, plot_image_grid
from ferlab.data.samples import SampleTable
from ferlab.errors import FerlabError

__all__ = ["dataset_stats", "format_stats", "write_stats"]


def dataset_stats(table: SampleTable) -> dict[str, Any]:
    """Counts per split and class, and each split's imbalance ratio (largest class / smallest present one)."""
    classes = table.classes()
    splits = {name or "unsplit": table.split(name).label_counts() for name in table.splits()}
    counts = {**splits, "all": table.label_counts()} if len(splits) > 1 else splits
    return {
        "origin": table.origin,
        "images": len(table),
        "classes": classes,
        "counts": counts,
        "imbalance": {name: round(max(c.values()) / min(c.values()), 2) for name, c in counts.items() if c},
        "missing": {name: [k for k in classes if k not in c] for name, c in counts.items() if len(c) < len(classes)},
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A table of counts with splits as columns, plus the imbalance ratios."""
    columns = list(stats["counts"])
    lines = [f"{stats['origin']}: {stats['images']} images, {len(stats['classes'])} classes", ""]
    lines.append(f"{'class':10s}" + "".join(f"{c:>10s}" for c in columns))
    for label in stats["classes"]:
        lines.append(f"{label:10s}" + "".join(f"{stats['counts'][c].get(label, 0):>10d}" for c in columns))
    lines.append(f"{'imbalance':10s}" + "".join(f"{stats['imbalance'].get(c, 0):>9.1f}:1" for c in columns))
    lines += [f"split {name} has no {', '.join(labels)}" for name, labels in stats["missing"].items()]
    return "\n".join(lines) + "\n"


def _sample_images(table: SampleTable, label: str, count: int, rng: random.Random) -> list[np.ndarray]:
    """Up to `count` readable images of `label`, drawn at random (unreadable ones are passed over)."""
    candidates = [s for s in table.samples if s.label == label]
    rng.shuffle(candidates)
    images = []
    for sample in candidates:
        if len(images) == count:
            break
        try:
            image = table.read_image(sample).convert("L")
        except FerlabError:
            continue
        image.thumbnail((96, 96))
        images.append(np.asarray(image))
    return images


def write_stats(table: SampleTable, out: str | Path, *, per_class: int = 8, seed: int = 0) -> dict[str, Any]:
    """Write ``stats.json``, ``stats.txt``, ``class_counts.png`` and ``samples.png`` (a grid per class) to `out`."""
    out = Path(out)
    stats = dataset_stats(table)
    write_json(out / "stats.json", stats)
    write_text(out / "stats.txt", format_stats(stats))
    plot_class_counts(stats["counts"], stats["classes"], out / "class_counts.png", title=f"Images per class: {Path(table.origin).name}")
    rng = random.Random(seed)
    rows = [_sample_images(table, label, per_class, rng) for label in stats["classes"]]
    plot_image_grid(rows, stats["classes"], out / "samples.png", title=f"Random samples per class: {Path(table.origin).name}")
    return stats
