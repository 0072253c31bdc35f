"""The LightningModule that trains any registered classifier."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics.classification import MulticlassAccuracy

from ferlab.models.freezing import apply_freeze, gradual_policy, parameter_blocks

__all__ = ["Classifier"]

log = logging.getLogger(__name__)


class Classifier(L.LightningModule):
    """Cross-entropy training of `model`, logging loss and accuracy per epoch.

    Targets are class indices, or (B, classes) shares for soft labels and
    mixed batches; accuracy is taken against their largest share.

    Args:
        model: maps normalised images (B, C, H, W) to logits (B, classes).
        num_classes: number of outputs.
        optimizer: "adam" or "sgd".
        lr, momentum, weight_decay: optimizer settings (momentum is SGD's).
        class_weights: per-class loss weights (imbalance), or None.
        batch_mixing: mixup/cutmix over (images, class indices) training batches, or None.
        backbone_lr_scale: the learning rate of every block but the head is `lr` times
            this (discriminative fine-tuning; 1 trains all alike).
        freeze: a freezing policy (`ferlab.models.freezing`); ``gradual:K`` is
            advanced at the start of every epoch. Frozen BatchNorm layers keep
            their running statistics (they stay in eval mode while training).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        num_classes: int,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        class_weights: torch.Tensor | None = None,
        batch_mixing: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        backbone_lr_scale: float = 1.0,
        freeze: str = "none",
    ) -> None:
        super().__init__()
        self.model = model
        self.backbone_lr_scale = backbone_lr_scale
        self.freeze = freeze
        if freeze != "none":  # "none" leaves the model's own choices (a stacking ensemble's frozen members)
            apply_freeze(model, freeze)
        self.register_buffer("class_weights", class_weights)
        self.batch_mixing = batch_mixing
        self.optimizer_name = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        images, targets = batch
        if stage == "train" and self.batch_mixing is not None:
            images, targets = self.batch_mixing(images, targets)
        logits = self(images)
        loss = F.cross_entropy(logits, targets, weight=self.class_weights)
        accuracy(logits, targets if targets.ndim == 1 else targets.argmax(dim=1))
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets))
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode:
            for layer in self.model.modules():
                if isinstance(layer, _BatchNorm) and not any(p.requires_grad for p in layer.parameters()):
                    layer.eval()
        return self

    def on_train_epoch_start(self) -> None:
        policy = gradual_policy(self.freeze, self.current_epoch, self.model)
        if policy is not None:
            trainable, total = apply_freeze(self.model, policy)
            self.train()
            log.info("epoch %d: %s, %d of %d parameters train", self.current_epoch, policy, trainable, total)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Every parameter is handed to the optimizer, frozen or not, so that gradual
        # unfreezing only flips requires_grad; parameters without gradients are skipped.
        *backbone, head = parameter_blocks(self.model)
        groups = [
            {"params": [p for block in backbone for p in block], "lr": self.lr * self.backbone_lr_scale},
            {"params": head, "lr": self.lr},
        ]
        groups = [g for g in groups if g["params"]]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
