"""Ensembles: saved models combined into one that saves, loads, evaluates and predicts like any model.

An ensemble takes pixels scaled to [0, 1] at its own size and channel count,
adapts them to each member's preprocessing, and combines the members by mean
probability, weighted vote, or a head trained on their features (stacking).
Saved, it stores each member's metadata rather than its path, and every
member's weights in its own safetensors file, so it needs no member files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from ferlab._io import check_new_folder
from ferlab.data.framing import Framing
from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models.io import LoadedModel, build_model, load_model, save_model
from ferlab.models.meta import ModelMeta
from ferlab.models.onnx import write_model_onnx
from ferlab.models.registry import register_model

__all__ = ["METHODS", "Ensemble", "ensemble", "save_ensemble"]

METHODS = ("mean", "vote", "stacking")
MemberSpec = str | Path | Mapping[str, Any]

_EPS = 1e-12  # floor on probabilities before log: log(0) would give -inf logits and NaN gradients
_VOTE_MIX = 1e-3  # share of mean probability in vote outputs: breaks ties, keeps every class above zero
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, the weights of PIL's convert("L") that grayscale members were fed


class _MemberInput(nn.Module):
    """The ensemble's input ([0, 1], its channels and size) -> one member's normalised input."""

    def __init__(self, in_chans: int, input_size: int, prep: Preprocessing) -> None:
        super().__init__()
        # Decided once here, not per batch, so forward has no data-dependent branches (ONNX export).
        self.to_gray = in_chans == 3 and prep.channels == 1
        self.to_rgb = in_chans == 1 and prep.channels == 3
        self.size = prep.pixel_size if prep.pixel_size != input_size else None
        self.crop = prep.input_size if prep.input_size != prep.pixel_size else None  # a crop member's centre view
        # Not persistent: derived from metadata, they follow .to(device) but stay out of the state_dict.
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(prep.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_chans, S, S) in [0, 1]
        if self.to_gray:
            x = (x * self.luma).sum(dim=1, keepdim=True)  # (B, 1, S, S)
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if self.crop is not None:
            x = TF.center_crop(x, [self.crop, self.crop])
        if self.to_rgb:
            x = x.expand(-1, 3, -1, -1)  # (B, 3, s, s)
        return (x - self.mean) / self.std


class _Tap:
    """Forward pre-hook keeping the input of a member's last Linear: its penultimate features (B, F)."""

    def __init__(self) -> None:
        self.features: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.features = inputs[0]

    def take(self) -> torch.Tensor:
        features, self.features = self.features, None  # not kept past the batch
        assert features is not None, "the member did not run its last Linear"
        return features


def _last_linear(module: nn.Module) -> nn.Linear | None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise FerlabError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")


def _normalised_weights(weights: Sequence[float] | None, count: int, method: str) -> tuple[float, ...]:
    """Raises: FerlabError: weights for stacking, of the wrong length, or not all positive."""
    if weights is None:
        return (1.0 / count,) * count
    if method == "stacking":
        raise FerlabError("ensemble weights apply to mean and vote; stacking learns its own from data")
    values = [float(w) for w in weights]
    if len(values) != count:
        raise FerlabError(f"ensemble weights: expected one per member ({count}), got {len(values)}: {values}")
    if not all(math.isfinite(w) and w > 0 for w in values):
        raise FerlabError(f"ensemble weights must all be positive, got {values}")
    total = sum(values)
    return tuple(w / total for w in values)


class Ensemble(nn.Module):
    """Classifiers with the same classes, combined into one; its input is pixels scaled to [0, 1].

    Outputs are logits for ``softmax``: for mean and vote, the log of the combined
    probabilities, so that softmax gives them back; for stacking, the head's logits.
    Each member's logits are divided by its own temperature, so a member contributes
    the calibrated probabilities it gives on its own.

    Args:
        members: the member models (their modules become ``members.0``, ``members.1``, ...).
        in_chans, input_size: the ensemble's own input; each member's is adapted from it.
        method: "mean" (weighted mean of member probabilities), "vote" (weighted
            majority of member argmaxes, ties broken by the mean probability) or
            "stacking" (a head trained on the frozen members' penultimate features).
        weights: one positive weight per member for mean and vote (default equal).
        stack_hidden: width of the stacking head's hidden layer (0: a single Linear).
        stack_dropout: dropout before the last Linear of a hidden stacking head.
        names: how messages refer to each member (default: its architecture).

    Raises:
        FerlabError: no members, members with different classes, a bad method, weights or input.
    """

    def __init__(
        self,
        members: Sequence[LoadedModel],
        *,
        in_chans: int,
        input_size: int,
        method: str = "mean",
        weights: Sequence[float] | None = None,
        stack_hidden: int = 0,
        stack_dropout: float = 0.0,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        _check_method(method)
        if not members:
            raise FerlabError("an ensemble needs at least one member")
        if in_chans not in (1, 3):
            raise FerlabError(f"ensemble in_chans must be 1 or 3, got {in_chans}")
        names = list(names) if names is not None else [m.meta.architecture for m in members]
        first = members[0].meta.classes
        for i, member in enumerate(members[1:], 1):
            if member.meta.classes != first:
                raise FerlabError(
                    f"ensemble member {i} ({names[i]}) has classes {list(member.meta.classes)}, but member 0 "
                    f"({names[0]}) has {list(first)}; members must predict the same classes in the same order"
                )
        self.method = method
        self.member_metas = tuple(m.meta for m in members)
        self.given_weights = None if weights is None else [float(w) for w in weights]
        self.stack_hidden = int(stack_hidden)
        self.stack_dropout = float(stack_dropout)
        self.members = nn.ModuleList(m.module for m in members)
        self.inputs = nn.ModuleList(_MemberInput(in_chans, input_size, m.meta.preprocessing) for m in members)
        weight_values = _normalised_weights(weights, len(members), method)
        self.register_buffer("weights", torch.tensor(weight_values).view(-1, 1, 1), persistent=False)  # (M, 1, 1)
        temperatures = [m.meta.temperature for m in members]
        self.register_buffer("temperatures", torch.tensor(temperatures).view(-1, 1, 1), persistent=False)  # (M, 1, 1)
        self.head: nn.Module | None = None
        self._taps: list[_Tap | None] = []
        if method == "stacking":
            self._build_stacking_head(len(first))
        self.train()  # stacking members go to eval mode at once

    def _build_stacking_head(self, num_classes: int) -> None:
        if self.stack_hidden < 0 or not 0 <= self.stack_dropout < 1:
            raise FerlabError(
                f"stacking head: stack_hidden must be >= 0 and stack_dropout in [0, 1), "
                f"got {self.stack_hidden} and {self.stack_dropout}"
            )
        self.members.requires_grad_(False)
        width = 0
        for member in self.members:
            linear = _last_linear(member)
            if linear is None:  # no Linear to tap: stack its logits instead
                self._taps.append(None)
                width += num_classes
            else:
                tap = _Tap()
                linear.register_forward_pre_hook(tap)
                self._taps.append(tap)
                width += linear.in_features
        if self.stack_hidden > 0:
            self.head = nn.Sequential(
                nn.Linear(width, self.stack_hidden), nn.BatchNorm1d(self.stack_hidden), nn.ReLU(inplace=True),
                nn.Dropout(self.stack_dropout),
                nn.Linear(self.stack_hidden, num_classes),
            )
        else:
            self.head = nn.Linear(width, num_classes)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.member_metas[0].classes

    def train(self, mode: bool = True) -> Ensemble:
        """Stacking keeps its frozen members in eval mode (fixed BatchNorm statistics, no dropout) in any mode."""
        super().train(mode)
        if self.method == "stacking":
            self.members.eval()
        return self

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits over its temperature, for the ensemble input `x` (B, C, H, W) in [0, 1]; (M, B, K)."""
        return torch.stack([member(adapt(x)) for member, adapt in zip(self.members, self.inputs)]) / self.temperatures

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1] -> (B, classes)
        logits = self.member_logits(x)  # (M, B, K)
        if self.method == "stacking":
            assert self.head is not None
            features = [tap.take() if tap is not None else logits[i] for i, tap in enumerate(self._taps)]
            return self.head(torch.cat(features, dim=1))  # (B, sum of feature widths) -> (B, K)
        mean = (torch.softmax(logits, dim=2) * self.weights).sum(dim=0)  # (B, K)
        if self.method == "mean":
            return mean.clamp_min(_EPS).log()
        votes = F.one_hot(logits.argmax(dim=2), logits.shape[2]).to(mean.dtype)  # (M, B, K)
        shares = (votes * self.weights).sum(dim=0)  # (B, K), sums to 1
        # Vote totals closer than about _VOTE_MIX count as tied; the mean probability decides between them.
        return ((1 - _VOTE_MIX) * shares + _VOTE_MIX * mean).clamp_min(_EPS).log()

    def stored_kwargs(self) -> dict[str, Any]:
        """The builder's arguments with each member as its metadata, so a saved ensemble needs no member files."""
        return {
            "members": [meta.to_dict() for meta in self.member_metas],
            "method": self.method,
            "weights": self.given_weights,
            "stack_hidden": self.stack_hidden,
            "stack_dropout": self.stack_dropout,
        }


def _load_members(items: Sequence[MemberSpec]) -> tuple[list[LoadedModel], list[str]]:
    """Members from saved-model paths (weights included) or metadata dicts (built fresh); with names for messages."""
    if isinstance(items, (str, Path, Mapping)) or not isinstance(items, Sequence):
        raise FerlabError(f"ensemble members must be a list of model paths or metadata dicts, got {items!r}")
    if not items:
        raise FerlabError("an ensemble needs at least one member")
    members: list[LoadedModel] = []
    names: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, (str, Path)):
            try:
                members.append(load_model(item))
            except FerlabError as err:
                raise FerlabError(f"ensemble member {i}: {err}") from None
            names.append(str(item))
        elif isinstance(item, Mapping):
            meta = ModelMeta.from_dict(dict(item), f"ensemble member {i}")
            members.append(LoadedModel(build_model(meta), meta))
            names.append(meta.architecture)
        else:
            raise FerlabError(f"ensemble member {i}: expected a model path or a metadata dict, got {item!r}")
    return members, names


@register_model("ensemble", preprocessing=Preprocessing(48, 1, (0.0,), (1.0,)))
def ensemble(
    *,
    num_classes: int,
    in_chans: int,
    input_size: int,
    members: Sequence[MemberSpec],
    method: str = "mean",
    weights: Sequence[float] | None = None,
    stack_hidden: int = 0,
    stack_dropout: float = 0.0,
) -> Ensemble:
    """Saved models combined by mean probability, weighted vote or a trained stacking head.

    Args:
        members: saved-model paths (run folder, .safetensors or .json), or member
            metadata dicts (``ModelMeta.to_dict()``) whose weights come from the
            ensemble's own state_dict when it is loaded.
        method, weights, stack_hidden, stack_dropout: see `Ensemble`.

    Raises:
        FerlabError: a member that is not a model, or members whose classes differ from each other or `num_classes`.
    """
    _check_method(method)
    loaded, names = _load_members(members)
    classes = loaded[0].meta.classes
    if num_classes != len(classes):
        raise FerlabError(
            f"ensemble of {num_classes} classes, but its members predict {len(classes)}: {list(classes)}"
        )
    return Ensemble(loaded, in_chans=in_chans, input_size=input_size, method=method, weights=weights,
                    stack_hidden=stack_hidden, stack_dropout=stack_dropout, names=names)


def save_ensemble(
    members: Sequence[str | Path],
    out: str | Path,
    *,
    method: str = "mean",
    weights: Sequence[float] | None = None,
) -> Path:
    """Combine saved models without training and save the ensemble into `out`; returns its weights path.

    Its input is the largest member input size, RGB if any member is, scaled to
    [0, 1]; each member adapts that to its own preprocessing.

    Args:
        members: saved-model paths (run folder, .safetensors or .json).
        out: a new or empty folder.
        method: "mean" or "vote" (stacking needs training).
        weights: one positive weight per member (default equal).

    Raises:
        FerlabError: stacking, a non-empty `out`, or members or weights the ensemble refuses.
    """
    _check_method(method)
    if method == "stacking":
        raise FerlabError(
            "method 'stacking' trains a head on the members' features, so it needs data: use "
            "`ferlab train --model ensemble model.kwargs.members=[run_a,run_b] model.kwargs.method=stacking`"
        )
    out = check_new_folder(out, "ensemble folder", "choose a new folder for the ensemble")
    loaded, names = _load_members(members)
    preps = [m.meta.preprocessing for m in loaded]
    channels = 3 if any(p.channels == 3 for p in preps) else 1
    prep = Preprocessing(max(p.pixel_size for p in preps), channels, (0.0,) * channels, (1.0,) * channels)
    module = Ensemble(loaded, in_chans=prep.channels, input_size=prep.input_size, method=method, weights=weights,
                      names=names).eval()
    meta = ModelMeta("ensemble", module.classes, prep, module.stored_kwargs(), framing=_shared_framing(loaded, names))
    weights_path = save_model(module, meta, out)
    write_model_onnx(LoadedModel(module, meta), out)
    return weights_path


def _shared_framing(members: Sequence[LoadedModel], names: Sequence[str]) -> dict[str, Framing]:
    """The members' framing for each detector any of them records; one crop feeds them all, so they must agree.

    Raises:
        FerlabError: members that cut faces found by one detector differently (named, with their framings).
    """
    shared = {}
    for detector in sorted({name for m in members for name in m.meta.framing}):
        framings = [m.meta.framing_for(detector) for m in members]
        if len(set(framings)) > 1:
            listed = "; ".join(f"{name}: {framing.to_dict()}" for name, framing in zip(names, framings))
            raise FerlabError(f"ensemble members frame faces found by {detector} differently ({listed}); an ensemble "
                              "cuts one crop for all its members, so combine models trained with the same data.framing")
        shared[detector] = framings[0]
    return shared
