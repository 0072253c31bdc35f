"""Optimizers and learning-rate schedules, built from their configs for the LightningModule.

`Classifier` takes the two factories below, so it never reads a config itself
and a test can hand it any optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim import lr_scheduler as schedulers

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
    name: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    min_lr: float = 0.0,
    factor: float = 0.5,
    patience: int = 3,
    step_size: int = 10,
    gamma: float = 0.1,
) -> Callable[[Optimizer], dict[str, Any]] | None:
    """A factory of Lightning's ``lr_scheduler`` entry for the named schedule, or None for ``none``.

    - plateau: ReduceLROnPlateau on validation accuracy (`factor`, `patience`);
    - cosine: linear warm-up over `warmup_epochs`, then cosine decay to `min_lr`, per epoch;
    - onecycle: OneCycleLR over every step of the run, peaking at each group's lr;
    - step: multiply by `gamma` every `step_size` epochs.
    """
    if name == "none":
        return None

    def build(optimizer: Optimizer) -> dict[str, Any]:
        if name == "plateau":
            return {"scheduler": schedulers.ReduceLROnPlateau(optimizer, mode="max", factor=factor, patience=patience,
                                                               min_lr=min_lr),
                    "monitor": "val_acc", "interval": "epoch"}
        if name == "onecycle":
            peaks = [group["lr"] for group in optimizer.param_groups]
            return {"scheduler": schedulers.OneCycleLR(optimizer, max_lr=peaks, total_steps=epochs * steps_per_epoch),
                    "interval": "step"}
        if name == "step":
            return {"scheduler": schedulers.StepLR(optimizer, step_size=step_size, gamma=gamma), "interval": "epoch"}
        cosine = schedulers.CosineAnnealingLR(optimizer, T_max=max(epochs - warmup_epochs, 1), eta_min=min_lr)
        if warmup_epochs <= 0:
            return {"scheduler": cosine, "interval": "epoch"}
        warmup = schedulers.LinearLR(optimizer, start_factor=1 / (warmup_epochs + 1), total_iters=warmup_epochs)
        return {"scheduler": schedulers.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs]),
                "interval": "epoch"}

    return build
