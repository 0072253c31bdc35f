"""From-scratch CNNs for 48x48 face crops: the classic baselines users start from."""

from __future__ import annotations

from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.registry import register_model

__all__ = ["baseline_cnn", "cnn3_bn"]


def _flat_side(input_size: int, pools: int) -> int:
    side = input_size >> pools
    if side < 1:
        raise FerlabError(f"input_size {input_size} is too small for {pools} 2x2 poolings")
    return side


@register_model()
def baseline_cnn(*, num_classes: int, in_chans: int, input_size: int, hidden: int = 512) -> nn.Module:
    """Three conv + max-pool layers and three fully connected layers (logits; softmax at prediction)."""
    side = _flat_side(input_size, 3)
    return nn.Sequential(
        nn.Conv2d(in_chans, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, 32, S/2, S/2)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, 64, S/4, S/4)
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, 128, S/8, S/8)
        nn.Flatten(),
        nn.Linear(128 * side * side, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True),
        nn.Linear(hidden // 2, num_classes),
    )


def _conv_relu_bn_pool(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(cout), nn.MaxPool2d(2)]


@register_model()
def cnn3_bn(*, num_classes: int, in_chans: int, input_size: int, dense: int = 256, dropout: float = 0.5) -> nn.Module:
    """Three conv-ReLU-BatchNorm-max-pool blocks (32/64/128 filters, 3x3), a dense layer and dropout."""
    side = _flat_side(input_size, 3)
    return nn.Sequential(
        *_conv_relu_bn_pool(in_chans, 32),
        *_conv_relu_bn_pool(32, 64),
        *_conv_relu_bn_pool(64, 128),  # (B, 128, S/8, S/8)
        nn.Flatten(),
        nn.Linear(128 * side * side, dense), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(dense, num_classes),
    )
