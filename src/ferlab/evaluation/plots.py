"""Evaluation plots as PNG files, drawn without pyplot's global state.

Curves are one-vs-rest per class; a class without positives among the targets (a
superset model on a smaller test set) has no curve and is named on the plot instead.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.calibration import calibration_curve
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

from ferlab._io import save_figure
from ferlab.evaluation.metrics import check_predictions
from ferlab.models.calibration import expected_calibration_error

__all__ = [
    "plot_confusion_matrix",
    "plot_gallery",
    "plot_gallery_rows",
    "plot_precision_recall",
    "plot_reliability",
    "plot_roc",
]

#: Characters per caption line before a long single-line caption wraps.
_CAPTION_WIDTH = 22


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


def _class_colour(k: int, num_classes: int) -> tuple[float, ...]:
    """The same colour for class `k` in every plot."""
    palette = colormaps["tab10" if num_classes <= 10 else "tab20"]
    return palette(k % palette.N)


def _left_out_note(classes: Sequence[str], left_out: list[int], why: str) -> str:
    return f"\nleft out ({why}): {', '.join(classes[k] for k in left_out)}" if left_out else ""


def plot_roc(targets: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """One-vs-rest ROC curve per class with its AUROC, and the macro average over those classes.

    Classes without both positives and negatives in `targets` have no ROC curve; the title names them.

    Raises:
        ValueError: shapes disagree (see `check_predictions`).
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    check_predictions(targets, probs, len(classes))
    drawn = [k for k in range(len(classes)) if 0 < np.sum(targets == k) < len(targets)]
    left_out = [k for k in range(len(classes)) if k not in drawn]
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.add_subplot()
    displays = [
        RocCurveDisplay.from_predictions(targets == k, probs[:, k], pos_label=True, name=classes[k], ax=ax,
                                         curve_kwargs={"color": _class_colour(k, len(classes)), "linewidth": 1.2})
        for k in drawn
    ]
    if displays:
        # Averaged on the union of the curves' false-positive rates, where each curve is exact,
        # so the area under the mean curve is the mean of the per-class areas.
        grid = np.unique(np.concatenate([d.fpr for d in displays]))
        mean_tpr = np.mean([np.interp(grid, d.fpr, d.tpr) for d in displays], axis=0)
        ax.plot(grid, mean_tpr, color="black", linewidth=2.2,
                label=f"macro average (AUC = {np.mean([d.roc_auc for d in displays]):.2f})")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title((title or "ROC curves (one vs rest)")
                 + _left_out_note(classes, left_out, "no positives or no negatives"), fontsize=10)
    return save_figure(fig, path)


def plot_precision_recall(
    targets: np.ndarray, probs: np.ndarray, classes: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """One-vs-rest precision-recall curve per class with its average precision, and its prevalence as a dotted line.

    The prevalence is what a random ranking achieves, so each curve is read against its own dotted line.
    Classes without positives in `targets` are left out and named in the title.

    Raises:
        ValueError: shapes disagree (see `check_predictions`).
    """
    targets, probs = np.asarray(targets), np.asarray(probs)
    check_predictions(targets, probs, len(classes))
    drawn = [k for k in range(len(classes)) if np.any(targets == k)]
    left_out = [k for k in range(len(classes)) if k not in drawn]
    fig = Figure(figsize=(6.5, 6), layout="constrained")
    ax = fig.add_subplot()
    for k in drawn:
        colour = _class_colour(k, len(classes))
        PrecisionRecallDisplay.from_predictions(
            targets == k, probs[:, k], pos_label=True, name=classes[k], ax=ax, plot_chance_level=True,
            curve_kwargs={"color": colour, "linewidth": 1.2},
            chance_level_kw={"color": colour, "linestyle": ":", "linewidth": 1, "label": "_nolegend_"})
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.4", linestyle=":", linewidth=1))
    labels.append("prevalence (chance) per class")
    ax.legend(handles, labels, loc="lower left", fontsize=8)
    ax.set(xlabel="recall", ylabel="precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.grid(alpha=0.3)
    ax.set_title((title or "Precision-recall curves (one vs rest)")
                 + _left_out_note(classes, left_out, "no positives"), fontsize=10)
    return save_figure(fig, path)


def plot_reliability(
    probs_by_name: Mapping[str, np.ndarray], targets: np.ndarray, path: str | Path, bins: int = 15, title: str = ""
) -> Path:
    """Reliability diagram: accuracy against confidence (top label) per bin, one curve per entry, with its ECE.

    Args:
        probs_by_name: legend name -> (N, classes) probabilities for the same `targets`,
            e.g. ``{"before": p0, "after": p1}`` around temperature scaling.
        bins: equal-width confidence bins, for the curve, the ECE and the histogram below.

    Raises:
        ValueError: no entries, or shapes disagree.
    """
    if not probs_by_name:
        raise ValueError("no probabilities to plot")
    targets = np.asarray(targets)
    num_classes = np.shape(next(iter(probs_by_name.values())))[-1]  # every entry scores the same classes
    fig = Figure(figsize=(6, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for i, (name, probs) in enumerate(probs_by_name.items()):
        probs = np.asarray(probs)
        check_predictions(targets, probs, num_classes)
        confidence = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == targets).astype(int)
        accuracy, mean_confidence = calibration_curve(correct, confidence, pos_label=1, n_bins=bins)
        ece = expected_calibration_error(torch.as_tensor(probs), torch.as_tensor(targets), bins)
        colour = colormaps["tab10"](i % 10)
        top.plot(mean_confidence, accuracy, marker="o", markersize=4, color=colour, label=f"{name} (ECE = {ece:.3f})")
        bottom.hist(confidence, bins=edges, histtype="step", color=colour, linewidth=1.5)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(-0.02, 1.02))
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    top.set_title(title or f"Reliability diagram ({bins} bins)", fontsize=10)
    bottom.set(xlabel="confidence (top-class probability)", ylabel="images")
    bottom.grid(alpha=0.3)
    return save_figure(fig, path)


def _caption(text: str) -> str:
    """Captions with their own line breaks stay as written; a long single line wraps onto at most two."""
    if "\n" in text or len(text) <= _CAPTION_WIDTH:
        return text
    return textwrap.fill(text, width=_CAPTION_WIDTH, max_lines=2, placeholder="…")


def _check_image(image: np.ndarray, where: str) -> np.ndarray:
    image = np.asarray(image)
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{where} has shape {image.shape}; expected (H, W) or (H, W, 3)")
    return image


def _title_width(title: str) -> float:
    """Inches a suptitle needs: constrained layout moves things around but never grows the figure."""
    return 0.1 * max(map(len, title.splitlines()), default=0)


def plot_gallery_rows(rows: Sequence[Sequence[tuple[np.ndarray, str]]], path: str | Path, title: str = "") -> Path:
    """Images in rows as given, e.g. one row per class; each cell is (uint8 image, caption).

    Rows may differ in length; the grid is as wide as the longest. No cells at all writes a "(none)" figure.

    Raises:
        ValueError: an image is neither (H, W) nor (H, W, 3).
    """
    rows = [list(row) for row in rows if len(row)]
    if not rows:
        fig = Figure(figsize=(max(3.0, _title_width(title)), 1.0 + 0.25 * len(title.splitlines())), layout="constrained")
        fig.text(0.5, 0.5, "(none)", ha="center", va="center", fontsize=12, color="0.4")
        fig.suptitle(title)
        return save_figure(fig, path)
    cols = max(len(row) for row in rows)
    captions = [[_caption(str(caption)) for _, caption in row] for row in rows]
    caption_lines = max(c.count("\n") + 1 for row in captions for c in row)
    height = (1.4 + 0.13 * caption_lines) * len(rows) + (0.4 if title else 0.0)
    fig = Figure(figsize=(max(1.4 * cols, _title_width(title)), height), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(row):
                ax.set_axis_off()
                continue
            image = _check_image(row[c][0], f"image {c} of row {r}")
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            # An x-label on axes without ticks or frame sits right under the image, and constrained layout makes room.
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            ax.set_xlabel(captions[r][c], fontsize=7, labelpad=2)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_gallery(
    images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, title: str = "", columns: int = 8
) -> Path:
    """A grid of uint8 images, each (H, W) grayscale or (H, W, 3) RGB, with its caption under it.

    Used for mistakes, per-class examples, label-noise suspects and Grad-CAM overlays.
    An empty list writes a small figure saying "(none)", so a report always has its picture.

    Raises:
        ValueError: `images` and `captions` differ in length, `columns` < 1, or an image has another shape.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    cells = list(zip(images, captions))
    rows = [cells[start:start + columns] for start in range(0, len(cells), columns)]
    return plot_gallery_rows(rows, path, title)
