"""A per-epoch metrics CSV.

Lightning's CSVLogger writes training and validation metrics on separate rows
keyed by step; users want one row per epoch, so this small callback writes that.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from ferlab._io import write_csv

__all__ = ["EpochMetricsCSV"]


class EpochMetricsCSV(L.Callback):
    """Rewrites `path` (atomically) after every epoch: epoch, losses, accuracies, lr, seconds."""

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float | int]] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, float | int] = {"epoch": trainer.current_epoch + 1}
        for name in self.COLUMNS[1:5]:
            if name in metrics:
                row[name] = round(float(metrics[name]), 6)
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        self.rows.append(row)
        write_csv(self.path, self.rows, list(self.COLUMNS))
