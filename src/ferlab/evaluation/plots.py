"""Evaluation plots as PNG files, drawn without pyplot's global state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from ferlab._io import save_figure

__all__ = ["plot_confusion_matrix"]


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised colours with the counts written in each cell."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.8 * len(classes)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay(rates, display_labels=list(classes))
    display.plot(ax=ax, cmap="Blues", values_format=".2f", xticks_rotation=45)
    for (i, j), text in np.ndenumerate(display.text_):
        text.set_text(f"{rates[i, j]:.2f}\n({counts[i, j]})")
    ax.set_title(title or "Confusion matrix (rows: true class, normalised)")
    fig.tight_layout()
    return save_figure(fig, path)
