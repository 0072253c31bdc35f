"""Transfer learning on timm backbones: any timm model by name, plus short names for the usual ones.

A `TransferNet` is a timm backbone without its classifier (pooled features)
followed by a small configurable head. Grayscale input uses timm's folding of
the pretrained RGB stem weights (summed over the colour channels), so a
1-channel model starts from the same filters rather than a repeated channel.
Small inputs (48x48 FER crops) can keep the native stem or use one whose first
convolution no longer downsamples.
"""

from __future__ import annotations

import difflib
import logging
import socket
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models.registry import ModelEntry, add_entry, register_family

__all__ = ["BACKBONES", "TransferNet", "load_pretrained_file", "timm_preprocessing"]

log = logging.getLogger(__name__)

#: Short names and the timm models they stand for.
BACKBONES: dict[str, str] = {
    "mobilenetv2": "mobilenetv2_100",
    "vgg16": "vgg16",
    "resnet50": "resnet50",
    "inception_v3": "inception_v3",
    "efficientnet_b0": "efficientnet_b0",
    "convnext_tiny": "convnext_tiny",
}

#: Inputs at most this side use the small stem when `stem="auto"`.
_SMALL_INPUT = 112


def timm_preprocessing(name: str) -> Preprocessing:
    """The native input of a timm model (size, RGB, mean/std) from its pretrained config; no download."""
    try:
        cfg = timm.get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None:
        return Preprocessing(224, 3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return Preprocessing(int(cfg.input_size[-1]), 3, tuple(cfg.mean), tuple(cfg.std))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors or a torch file (tensors only: weights_only), unwrapped from checkpoints."""
    if not path.is_file():
        raise FerlabError(f"pretrained weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, pickle and zip errors have no common base
        raise FerlabError(f"cannot read pretrained weights {path}: {err}") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise FerlabError(f"{path} holds no state_dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained_file(backbone: nn.Module, name: str, path: str | Path) -> None:
    """Load a timm backbone's pretrained weights from a local file, strictly.

    The stem is folded to the backbone's channel count (timm's `adapt_input_conv`)
    and the classifier is dropped; any other key that is missing, unexpected or
    of another shape is an error naming the keys, so weights of another
    architecture are never half-loaded (timm itself only logs them).
    """
    path = Path(path).expanduser()
    state = _read_state_dict(path)
    cfg = timm.get_pretrained_cfg(name)
    first_conv = getattr(cfg, "first_conv", None)
    in_chans = _first_conv(backbone).in_channels
    if first_conv and f"{first_conv}.weight" in state and state[f"{first_conv}.weight"].shape[1] != in_chans:
        state[f"{first_conv}.weight"] = timm.models.adapt_input_conv(in_chans, state[f"{first_conv}.weight"])
    classifier = getattr(cfg, "classifier", None)
    classifiers = [classifier] if isinstance(classifier, str) else list(classifier or ())
    state = {k: v for k, v in state.items() if not any(k.startswith(f"{c}.") for c in classifiers)}
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        parts = [
            f"{label} {len(keys)} (e.g. {', '.join(keys[:4])})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped))
            if keys
        ]
        raise FerlabError(f"{path} does not fit timm's {name}: keys {'; '.join(parts)}")
    backbone.load_state_dict(state)
    log.info("loaded pretrained %s weights from %s", name, path)


def _hub_file(name: str) -> Path:
    """The pretrained weights of `name` from the Hugging Face hub (or its local cache).

    Offline, huggingface_hub retries for about a minute; a quick name lookup
    first turns that into an immediate, actionable message.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cfg = timm.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None)
    if not repo:
        raise FerlabError(f"timm's {name} has no weights on the Hugging Face hub; pass a local file with --pretrained PATH")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return Path(cached)
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        raise FerlabError(
            f"cannot download pretrained {name} weights: huggingface.co is unreachable (offline?). "
            f"Download https://huggingface.co/{repo} (model.safetensors) on a machine with a network "
            f"and pass it with --pretrained PATH, or train from scratch without --pretrained"
        ) from None
    try:
        return Path(hf_hub_download(repo, "model.safetensors"))
    except Exception as err:  # network, HTTP and hub errors
        raise FerlabError(f"cannot download pretrained {name} weights from {repo}: {err}") from None


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _use_small_stem(backbone: nn.Module) -> None:
    """The first convolution stops downsampling (and a ResNet's stem max-pool goes), so a 48x48 face is not 12x12 after the stem."""
    _first_conv(backbone).stride = (1, 1)
    if isinstance(getattr(backbone, "maxpool", None), nn.MaxPool2d):
        backbone.maxpool = nn.Identity()


class TransferNet(nn.Module):
    """A timm backbone (pooled features) and a head: [BN] -> [Linear-ReLU-[BN]-Dropout] -> Dropout -> Linear.

    Attributes:
        backbone: the timm model with ``num_classes=0``.
        head: the classifier on its features.
    """

    def __init__(
        self,
        name: str,
        *,
        num_classes: int,
        in_chans: int,
        input_size: int,
        pretrained: str | None = None,
        stem: str = "auto",
        global_pool: str = "avg",
        head_hidden: int = 0,
        head_bn: bool = False,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if stem not in ("auto", "native", "small"):
            raise FerlabError(f"{name}: stem must be auto, native or small, got {stem!r}")
        try:
            self.backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans,
                                              global_pool=global_pool)
        except (RuntimeError, ValueError, TypeError) as err:
            raise FerlabError(f"cannot create timm model {name!r}: {err}") from None
        if pretrained:
            load_pretrained_file(self.backbone, name, _hub_file(name) if pretrained == "hub" else pretrained)
        self.small_stem = stem == "small" or (stem == "auto" and input_size <= _SMALL_INPUT)
        if self.small_stem:
            _use_small_stem(self.backbone)
        self._stored = {"stem": stem, "global_pool": global_pool, "head_hidden": head_hidden,
                        "head_bn": head_bn, "head_dropout": head_dropout}
        # (B, features) out of the classifier-less backbone: after timm's pre-logits layers (VGG's 4096 MLP), if any
        features = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        layers: list[nn.Module] = [nn.BatchNorm1d(features)] if head_bn else []
        if head_hidden:
            layers += [nn.Linear(features, head_hidden), nn.ReLU(inplace=True)]
            layers += [nn.BatchNorm1d(head_hidden)] if head_bn else []
            features = head_hidden
        layers += [nn.Dropout(head_dropout), nn.Linear(features, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, C, H, W) -> (B, features) -> (B, classes)

    def stored_kwargs(self) -> dict[str, Any]:
        """Builder options for model.json: pretrained weights are inside the saved file, never fetched again."""
        return dict(self._stored)


def _entry(name: str, timm_name: str) -> ModelEntry:
    def build(*, num_classes: int, in_chans: int, input_size: int, **options: Any) -> nn.Module:
        return TransferNet(timm_name, num_classes=num_classes, in_chans=in_chans, input_size=input_size, **options)

    description = f"timm {timm_name} backbone with a configurable head (transfer learning)"
    return ModelEntry(name, build, timm_preprocessing(timm_name), description)


def _timm_entry(timm_name: str) -> ModelEntry:
    """The entry of ``timm:<timm_name>``, for any model timm knows."""
    if not timm.is_model(timm_name):
        close = difflib.get_close_matches(timm_name, timm.list_models(), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise FerlabError(f"unknown timm model {timm_name!r}{hint}")
    return _entry(f"timm:{timm_name}", timm_name)


for _short, _timm_name in BACKBONES.items():
    add_entry(_entry(_short, _timm_name))
register_family("timm:", _timm_entry)
