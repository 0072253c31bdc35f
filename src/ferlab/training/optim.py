"""Optimizers and learning-rate schedules, built from their configs for the LightningModule.

`Classifier` takes the two factories below, so it never reads a config itself
and a test can hand it any optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as schedulers

if TYPE_CHECKING:  # config.py imports the names below, so only for type hints
    from ferlab.training.config import ScheduleConfig

__all__ = ["OPTIMIZERS", "SCHEDULES", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "plateau", "cosine", "onecycle", "step")

ParamGroups = list[dict[str, Any]]


def make_optimizer(
    name: str, *, lr: float, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0
) -> Callable[[ParamGroups], Optimizer]:
    """A factory of the named torch optimizer over parameter groups (each group may carry its own lr).

    `momentum` is SGD's and RMSprop's; `weight_decay` is L2 (AdamW: decoupled).
    """
    common = {"lr": lr, "weight_decay": weight_decay}
    factories: dict[str, Callable[[ParamGroups], Optimizer]] = {
        "sgd": partial(torch.optim.SGD, momentum=momentum, nesterov=nesterov and momentum > 0, **common),
        "adam": partial(torch.optim.Adam, **common),
        "adamw": partial(torch.optim.AdamW, **common),
        "rmsprop": partial(torch.optim.RMSprop, momentum=momentum, **common),
    }
    return factories[name]


def make_schedule(
    schedule: ScheduleConfig, *, epochs: int, steps_per_epoch: int
) -> Callable[[Optimizer], dict[str, Any]] | None:
    """A factory of Lightning's ``lr_scheduler`` entry for `schedule`, or None for ``none``.

    - plateau: ReduceLROnPlateau on validation accuracy (`factor`, `patience`);
    - cosine: linear warm-up over `warmup_epochs`, then cosine decay to `min_lr`, per epoch;
    - onecycle: OneCycleLR over every step of the run, peaking at each group's lr;
    - step: multiply by `gamma` every `step_size` epochs.
    """
    if schedule.name == "none":
        return None
    warmup = schedule.warmup_epochs

    def build(optimizer: Optimizer) -> dict[str, Any]:
        if schedule.name == "plateau":
            plateau = schedulers.ReduceLROnPlateau(optimizer, mode="max", factor=schedule.factor,
                                                   patience=schedule.patience, min_lr=schedule.min_lr)
            return {"scheduler": plateau, "monitor": "val_acc", "interval": "epoch"}
        if schedule.name == "onecycle":
            peaks = [group["lr"] for group in optimizer.param_groups]
            return {"scheduler": schedulers.OneCycleLR(optimizer, max_lr=peaks, total_steps=epochs * steps_per_epoch),
                    "interval": "step"}
        if schedule.name == "step":
            step = schedulers.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
            return {"scheduler": step, "interval": "epoch"}
        cosine = schedulers.CosineAnnealingLR(optimizer, T_max=max(epochs - warmup, 1), eta_min=schedule.min_lr)
        if warmup <= 0:
            return {"scheduler": cosine, "interval": "epoch"}
        ramp = schedulers.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
        return {"scheduler": schedulers.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup]), "interval": "epoch"}

    return build
