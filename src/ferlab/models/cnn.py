"""From-scratch CNNs for 48x48 face crops: the classic baselines users start from.

Keras designs put an L2 penalty on kernels; here that is ``optim.weight_decay``:
Keras' ``l2(λ)`` adds λ·w² to the loss, so Adam/SGD's coupled decay of 2λ gives the
same gradient, on every parameter rather than on one layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.registry import register_model

__all__ = ["baseline_cnn", "cnn3_bn", "cnn5_leaky", "cnn11", "deep_cnn", "vgg_fer"]


def _out_side(model: str, input_size: int, plan: str) -> int:
    """Feature-map side after `plan`: ``v`` an unpadded 3x3 conv, ``p`` a 2x2 max-pool (padded convs keep it).

    Raises:
        FerlabError: the map would vanish; names the model and the smallest input it takes.
    """

    def shrink(side: int) -> int:
        for step in plan:
            side = side - 2 if step == "v" else side // 2
        return side

    side = shrink(input_size)
    if side < 1:
        smallest = next(s for s in count(1) if shrink(s) >= 1)
        raise FerlabError(f"{model} needs input_size >= {smallest} for its poolings, got {input_size}")
    return side


def _vgg_stage(cin: int, cout: int) -> list[nn.Module]:
    """Two 3x3 conv-BN-ReLU layers and a 2x2 max-pool: the VGG stage (Simonyan & Zisserman 2015) FER nets stack."""
    return [
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]


def _dense_bn(cin: int, cout: int, dropout: float, act: nn.Module | None = None) -> list[nn.Module]:
    """Linear-BN-activation-dropout; BN1d needs batches of two or more in training."""
    return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), act or nn.ReLU(inplace=True), nn.Dropout(dropout)]


@register_model(fast_bf16=True)
def baseline_cnn(*, num_classes: int, in_chans: int, input_size: int, hidden: int = 512) -> nn.Module:
    """Three conv + max-pool layers and three fully connected layers (logits; softmax at prediction)."""
    side = _out_side("baseline_cnn", input_size, "ppp")
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


@register_model(fast_bf16=True)
def cnn3_bn(*, num_classes: int, in_chans: int, input_size: int, dense: int = 256, dropout: float = 0.5) -> nn.Module:
    """Three conv-ReLU-BatchNorm-max-pool blocks (32/64/128 filters, 3x3), a dense layer and dropout."""
    side = _out_side("cnn3_bn", input_size, "ppp")
    return nn.Sequential(
        *_conv_relu_bn_pool(in_chans, 32),
        *_conv_relu_bn_pool(32, 64),
        *_conv_relu_bn_pool(64, 128),  # (B, 128, S/8, S/8)
        nn.Flatten(),
        nn.Linear(128 * side * side, dense), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(dense, num_classes),
    )


@register_model(fast_bf16=True)
def deep_cnn(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    widths: Sequence[int] = (64, 128, 256, 512),
    dense: Sequence[int] = (512, 256),
    block_dropout: float = 0.25,
    dropout: float = 0.5,
) -> nn.Module:
    """baseline_cnn deepened (Kaggle FER2013 CNN): 4 double-conv BN+dropout blocks 64-512, BN dense 512-256.

    The notebooks' L2 kernel penalty is ``optim.weight_decay`` here (see the module docstring).
    """
    side = _out_side("deep_cnn", input_size, "p" * len(widths))
    layers: list[nn.Module] = []
    cin = in_chans
    for width in widths:  # block k: (B, width, S/2^k, S/2^k)
        layers += [*_vgg_stage(cin, width), nn.Dropout(block_dropout)]
        cin = width
    head: list[nn.Module] = []
    features = cin * side * side  # 512 * 3 * 3 at 48x48
    for units in dense:
        head += _dense_bn(features, units, dropout)
        features = units
    return nn.Sequential(*layers, nn.Flatten(), *head, nn.Linear(features, num_classes))


@register_model(fast_bf16=True)
def cnn5_leaky(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    widths: Sequence[int] = (128, 256, 256, 512, 512),
    dropouts: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    pools: int = 4,
    dense: int = 512,
    dropout: float = 0.5,
    slope: float = 0.1,
) -> nn.Module:
    """Kaggle FER2013 CNN: 5 conv-BN-LeakyReLU blocks 128-512, dropout 0.1 to 0.5, global avg pool, BN dense 512.

    Max-pools follow the first `pools` blocks (48 -> 3 with the default four); the last
    block refines that 3x3 map before global average pooling, so larger inputs need no change.
    """
    if len(dropouts) != len(widths) or not 0 <= pools <= len(widths):
        raise FerlabError(
            f"cnn5_leaky needs one dropout per width and 0 <= pools <= {len(widths)}; "
            f"got {len(widths)} widths, {len(dropouts)} dropouts, pools={pools}"
        )
    _out_side("cnn5_leaky", input_size, "p" * pools)
    layers: list[nn.Module] = []
    cin = in_chans
    for k, (width, p) in enumerate(zip(widths, dropouts)):  # (B, width, S/2^k', S/2^k'), k' = pools so far
        layers += [nn.Conv2d(cin, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(slope, inplace=True)]
        layers += [nn.MaxPool2d(2)] if k < pools else []
        layers.append(nn.Dropout(p))
        cin = width
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, widths[-1])
        *_dense_bn(cin, dense, dropout, nn.LeakyReLU(slope, inplace=True)),
        nn.Linear(dense, num_classes),
    )


@register_model(fast_bf16=True)
def cnn11(*, num_classes: int, in_chans: int, input_size: int, dense: int = 1024, dropout: float = 0.4) -> nn.Module:
    """11-layer Keras-tutorial CNN (atulapra/Emotion-detection): unpadded convs 32-128, dense 1024, dropout 0.4.

    The tutorial's ``Rescaling(1/255)`` is left out: ferlab inputs arrive normalised by
    their `Preprocessing`. Its L2(0.001) on the dense kernel is ``optim.weight_decay=2e-3``
    (see the module docstring).
    """
    side = _out_side("cnn11", input_size, "vvpvpvp")
    return nn.Sequential(
        nn.Conv2d(in_chans, 32, 3), nn.ReLU(inplace=True),  # (B, 32, 46, 46) at 48x48
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout),  # (B, 64, 22, 22)
        nn.Conv2d(64, 128, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # (B, 128, 10, 10)
        nn.Conv2d(128, 128, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Dropout(dropout),  # (B, 128, 4, 4)
        nn.Flatten(),
        nn.Linear(128 * side * side, dense), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(dense, num_classes),
    )


@register_model(fast_bf16=True)
def vgg_fer(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    width: float = 1.0,
    fc: int = 1024,
    dropout: float = 0.5,
    pool: bool = False,
) -> nn.Module:
    """VGGNet for FER2013 (Khaireddin & Chen 2021, 73.3%): 4 double-conv BN stages 64-512, then a dense head.

    The paper's head is 4096-4096 with dropout 0.2 and no BN, on 40x40 ten-crops of heavily
    augmented faces (its 73.3% needs both); `fc` defaults to 1024 to keep the head near the
    size of the convolutions. `width` scales every stage, rounded to multiples of 8: 0.5
    leaves about a quarter of the conv weights. `pool`: global average pooling, then one BN
    dense layer (4.8 M parameters at width 1 with fc 256, any input size), instead of two
    dense layers over the flattened map.
    """
    if width <= 0:
        raise FerlabError(f"vgg_fer width must be positive, got {width}")
    side = _out_side("vgg_fer", input_size, "pppp")
    layers: list[nn.Module] = []
    cin = in_chans
    for base in (64, 128, 256, 512):  # stage k: (B, c, S/2^k, S/2^k)
        c = max(8, round(base * width / 8) * 8)
        layers += _vgg_stage(cin, c)
        cin = c
    if pool:
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), *_dense_bn(cin, fc, dropout)]  # (B, fc)
    else:
        head = [nn.Flatten(), *_dense_bn(cin * side * side, fc, dropout), *_dense_bn(fc, fc, dropout)]
    return nn.Sequential(*layers, *head, nn.Linear(fc, num_classes))
