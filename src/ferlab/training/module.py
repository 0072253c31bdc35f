"""The LightningModule that trains any registered classifier."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer
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
        optimizer: builds the optimizer from parameter groups (`training.optim.make_optimizer`).
        schedule: builds Lightning's lr_scheduler entry from the optimizer, or None.
        lr: the head's learning rate; every other block gets `lr * backbone_lr_scale`
            (discriminative fine-tuning; 1 trains all alike).
        label_smoothing: cross-entropy label smoothing.
        l1: weight of an L1 penalty on the weights (conv and linear kernels).
        class_weights: per-class loss weights (imbalance), or None.
        batch_mixing: mixup/cutmix over (images, class indices) training batches, or None.
        freeze: a freezing policy (`ferlab.models.freezing`); ``gradual:K`` is
            advanced at the start of every epoch. Frozen BatchNorm layers keep
            their running statistics (they stay in eval mode while training).
        channels_last: keep weights and inputs in the channels-last memory format (faster
            convolutions on CPUs and GPUs, see `ferlab.training.speed`).
        teacher: a trained model whose softened outputs the student also learns (distillation), fed
            the same normalised batches; it stays frozen, in eval mode, and out of the checkpoints.
        distill_weight, distill_temperature: see `ferlab.training.config.DistillConfig`.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        num_classes: int,
        optimizer: Callable[[list[dict[str, Any]]], Optimizer],
        schedule: Callable[[Optimizer], dict[str, Any]] | None = None,
        lr: float = 1e-3,
        backbone_lr_scale: float = 1.0,
        label_smoothing: float = 0.0,
        l1: float = 0.0,
        class_weights: torch.Tensor | None = None,
        batch_mixing: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        freeze: str = "none",
        channels_last: bool = False,
        teacher: nn.Module | None = None,
        distill_weight: float = 0.5,
        distill_temperature: float = 4.0,
    ) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.make_optimizer = optimizer
        self.make_schedule = schedule
        self.lr = lr
        self.backbone_lr_scale = backbone_lr_scale
        self.label_smoothing = label_smoothing
        self.l1 = l1
        self.freeze = freeze
        if freeze != "none":  # "none" leaves the model's own choices (a stacking ensemble's frozen members)
            apply_freeze(model, freeze)
        self.register_buffer("class_weights", class_weights)
        self.batch_mixing = batch_mixing
        # In a tuple, not an attribute: a registered submodule would be trained, saved and counted with the student.
        self.teacher = () if teacher is None else (teacher.eval().requires_grad_(False).to(memory_format=self.memory_format),)
        self.distill_weight = distill_weight
        self.distill_temperature = distill_temperature
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        images, targets = batch
        if stage == "train" and self.batch_mixing is not None:
            images, targets = self.batch_mixing(images, targets)
        logits = self(images)
        loss = F.cross_entropy(logits, targets, weight=self.class_weights, label_smoothing=self.label_smoothing)
        accuracy(logits, targets if targets.ndim == 1 else targets.argmax(dim=1))
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets))
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        if stage == "train" and self.teacher:  # logged loss stays the labels' cross-entropy, comparable to val_loss
            loss = (1 - self.distill_weight) * loss + self.distill_weight * self._distillation(images, logits)
        if stage == "train" and self.l1:
            kernels = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
            loss = loss + self.l1 * sum(p.abs().sum() for p in kernels)  # logged loss stays the data term
        return loss

    def _distillation(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """KL divergence of the student's softened outputs from the teacher's, times T squared (Hinton et al.)."""
        t = self.distill_temperature
        (teacher,) = self.teacher
        with torch.no_grad():
            targets = F.softmax(teacher(images.contiguous(memory_format=self.memory_format)).float() / t, dim=1)
        return F.kl_div(F.log_softmax(logits.float() / t, dim=1), targets, reduction="batchmean") * t * t

    def on_fit_start(self) -> None:
        for teacher in self.teacher:  # not a submodule, so Lightning does not move it with the student
            teacher.to(self.device)

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

    def configure_optimizers(self) -> Any:
        # Every parameter is handed to the optimizer, frozen or not, so that gradual
        # unfreezing only flips requires_grad; parameters without gradients are skipped.
        *backbone, head = parameter_blocks(self.model)
        groups = [
            {"params": [p for block in backbone for p in block], "lr": self.lr * self.backbone_lr_scale},
            {"params": head, "lr": self.lr},
        ]
        optimizer = self.make_optimizer([g for g in groups if g["params"]])
        if self.make_schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.make_schedule(optimizer)}
