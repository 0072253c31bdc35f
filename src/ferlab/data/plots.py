"""Pictures of a dataset: class counts per split and grids of images."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ferlab._io import save_figure

__all__ = ["plot_class_counts", "plot_image_grid"]


def plot_class_counts(counts: Mapping[str, Mapping[str, int]], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Grouped bars: one group per class, one bar per split, the count written on each bar."""
    splits = list(counts)
    fig = Figure(figsize=(1.2 + 1.1 * len(classes), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(classes))
    for k, split in enumerate(splits):
        values = [counts[split].get(c, 0) for c in classes]
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylabel("images")
    ax.legend()
    ax.set_title(title or "Images per class")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_image_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str], path: str | Path,
                    title: str = "", column_labels: Sequence[str] = ()) -> Path:
    """Images as a grid; each is (H, W) grayscale or (H, W, 3) RGB uint8; short rows leave blanks."""
    n_cols = max((len(r) for r in rows), default=1)
    fig = Figure(figsize=(1.0 + 1.1 * n_cols, 0.6 + 1.15 * len(rows)))
    axes = np.atleast_2d(fig.subplots(len(rows), n_cols, squeeze=False))
    for r, (images, label) in enumerate(zip(rows, row_labels)):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center")
            if r == 0 and c < len(column_labels):
                ax.set_title(column_labels[c], fontsize=8)
    if title:
        fig.suptitle(textwrap.fill(title, width=int(12 * n_cols + 20)), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
