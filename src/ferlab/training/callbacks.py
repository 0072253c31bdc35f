"""Small callbacks: a per-epoch metrics CSV, per-epoch seeding for exact resumes, a run clock, a progress bar.

Lightning's CSVLogger writes training and validation metrics on separate rows
keyed by step; users want one row per epoch, so `EpochMetricsCSV` writes that.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import TQDMProgressBar

from ferlab._io import write_csv

__all__ = ["EpochMetricsCSV", "EpochProgressBar", "EpochSeeding", "RunClock"]


class EpochMetricsCSV(L.Callback):
    """Rewrites `path` (atomically, on the main process) after every epoch: epoch, losses, accuracies, lr, seconds.

    Its rows are part of the checkpoint, so a resumed run continues the same file.
    """

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
        row["lr"] = trainer.optimizers[0].param_groups[-1]["lr"]  # the head's
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        self.rows.append(row)
        if trainer.is_global_zero:
            write_csv(self.path, self.rows, list(self.COLUMNS))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class EpochSeeding(L.Callback):
    """Reseeds every random generator from (seed, epoch) when an epoch starts.

    Dropout, augmentation and mixing then draw the same numbers in epoch k
    whether the run went straight through or was resumed from a checkpoint.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_everything(self.seed * 100_003 + trainer.current_epoch + trainer.global_rank * 7919, verbose=False)


class RunClock(L.Callback):
    """Seconds a run has taken over all its segments: the count so far rides in every checkpoint.

    Args:
        started: ``time.perf_counter()`` when this segment began.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.earlier = 0.0  # the segments before this one, as of the checkpoint resumed from

    def seconds(self) -> float:
        return self.earlier + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = float(state_dict["seconds"])


class EpochProgressBar(TQDMProgressBar):
    """Lightning's bar (one line, not kept per epoch), counting epochs from 1 as metrics.csv does.

    A one-epoch run shows "Epoch 1/1", where Lightning's bars show "Epoch 0" or "Epoch 0/0".
    """

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        total = self.total_train_batches  # float("inf") for an iterable without a length
        self.train_progress_bar.reset(total=None if math.isinf(total) else total)
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
