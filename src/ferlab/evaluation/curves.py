"""Training curves of several runs overlaid, read from their ``metrics.csv`` files.

Comparisons repeat each configuration over seeds; one line per configuration
(the mean over its seeds, with a ±1 std band) keeps the plot readable where a
line per run would not.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ferlab._io import save_figure
from ferlab.errors import FerlabError
from ferlab.rundir import RunDir

__all__ = ["PANELS", "mean_curves", "plot_curves", "plot_run_curves", "read_metrics"]

#: (metrics.csv column, panel title), drawn as 2x2 panels in this order.
PANELS = (
    ("train_acc", "train accuracy"),
    ("val_acc", "validation accuracy"),
    ("train_loss", "train loss"),
    ("val_loss", "validation loss"),
)
_LINESTYLES = ("-", "--", ":", "-.")


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Each `PANELS` column of a run's ``metrics.csv`` by epoch (NaN where a value is missing).

    Raises:
        FerlabError: the file is missing or has no epoch rows.
    """
    path = RunDir(run_dir).metrics
    if not path.is_file():
        raise FerlabError(f"no metrics.csv in {run_dir} (expected a run folder written by ferlab train)")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise FerlabError(f"{path} has no epochs")
    return {column: np.array([_number(row.get(column)) for row in rows]) for column, _ in PANELS}


def mean_curves(run_dirs: Sequence[str | Path]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Mean and std over runs, epoch by epoch; past a run's last epoch (early stopping) the others carry on.

    Returns:
        (mean, std) by column, each of length the longest run; std is 0 where one run remains.
    """
    curves = [read_metrics(d) for d in run_dirs]
    length = max(len(c["val_acc"]) for c in curves)
    mean: dict[str, np.ndarray] = {}
    std: dict[str, np.ndarray] = {}
    for column, _ in PANELS:
        stack = np.full((len(curves), length), np.nan)  # (runs, epochs)
        for i, curve in enumerate(curves):
            stack[i, : len(curve[column])] = curve[column]
        finite = np.isfinite(stack)
        counts = finite.sum(axis=0)
        filled = np.where(finite, stack, 0.0)
        # Averaged by hand rather than np.nanmean, which warns on epochs no run has.
        mean[column] = np.where(counts > 0, filled.sum(axis=0) / np.maximum(counts, 1), np.nan)
        spread = np.where(finite, (stack - mean[column]) ** 2, 0.0).sum(axis=0)
        std[column] = np.where(counts > 1, np.sqrt(spread / np.maximum(counts - 1, 1)), 0.0)
    return mean, std


def plot_curves(run_dirs_by_label: Mapping[str, Sequence[str | Path]], path: str | Path, title: str = "") -> Path:
    """2x2 panels (train/val accuracy and loss per epoch), one colour per label, mean over its runs.

    Args:
        run_dirs_by_label: legend label -> run folders (e.g. one per seed) holding ``metrics.csv``.

    Raises:
        FerlabError: no runs, or a run folder without readable metrics.
    """
    labelled = {label: list(dirs) for label, dirs in run_dirs_by_label.items() if dirs}
    if not labelled:
        raise FerlabError("no runs to plot")
    palette = colormaps["tab10" if len(labelled) <= 10 else "tab20"]
    legend_rows = math.ceil(len(labelled) / 3)
    fig = Figure(figsize=(11, 7.5 + 0.3 * legend_rows), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for i, (label, dirs) in enumerate(labelled.items()):
        mean, std = mean_curves(dirs)
        epochs = np.arange(1, len(mean["val_acc"]) + 1)
        style = {"color": palette(i % palette.N), "linestyle": _LINESTYLES[i // palette.N % len(_LINESTYLES)]}
        for ax, (column, _) in zip(axes, PANELS):
            ax.plot(epochs, mean[column], label=f"{label} ({len(dirs)} runs)" if len(dirs) > 1 else label,
                    marker="o" if len(epochs) < 15 else None, markersize=3, **style)
            if len(dirs) > 1:
                low, high = mean[column] - std[column], mean[column] + std[column]
                if column.endswith("acc"):
                    low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
                ax.fill_between(epochs, low, high, color=style["color"], alpha=0.15, linewidth=0)
    for ax, (column, name) in zip(axes, PANELS):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if column.endswith("acc") else "loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=9)
    fig.suptitle(title or "Training curves (mean over seeds, band: ±1 std)")
    return save_figure(fig, path)


def plot_run_curves(run_dir: str | Path, path: str | Path, title: str = "") -> Path:
    """One run's accuracy and loss per epoch, training and validation on the same axes to show over-fitting."""
    curve = read_metrics(run_dir)
    epochs = np.arange(1, len(curve["val_acc"]) + 1)
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, kind in zip(fig.subplots(1, 2), ("acc", "loss")):
        for stage, style in (("train", "-"), ("val", "--")):
            ax.plot(epochs, curve[f"{stage}_{kind}"], style, marker="o" if len(epochs) < 15 else None, markersize=3,
                    label="training" if stage == "train" else "validation")
        ax.set_title("accuracy" if kind == "acc" else "loss")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or f"Training curves: {Path(run_dir).name}")
    return save_figure(fig, path)
