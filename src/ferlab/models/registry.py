"""Create models by name: one registry, one factory."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError

__all__ = [
    "ModelEntry",
    "add_entry",
    "check_input",
    "count_parameters",
    "create_model",
    "list_models",
    "model_entry",
    "register_family",
    "register_model",
]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture and the input it expects unless told otherwise.

    Attributes:
        fast_bf16: trains faster under bf16 autocast on CPUs with bf16 (plain 3x3 convolutions,
            measured by ``benchmarks/train_speed.py``); depthwise nets are slower there and say False.
    """

    name: str
    builder: Callable[..., nn.Module]
    preprocessing: Preprocessing
    description: str
    fast_bf16: bool = False


_REGISTRY: dict[str, ModelEntry] = {}
#: Name prefixes (``timm:``) whose entries are made on demand from the rest of the name.
_FAMILIES: dict[str, Callable[[str], ModelEntry]] = {}
#: The modules whose import registers the built-in architectures (and the ``timm:`` family).
BUILTIN_MODULES = ("ferlab.models.cnn", "ferlab.models.transfer", "ferlab.models.xception", "ferlab.models.ensemble")


def _builtin_registered() -> None:
    """Import the built-in architectures before the first lookup.

    `ferlab.models` loads its names lazily (so inference need not import timm), hence the
    registry itself makes sure its entries exist; an import is a no-op once done.
    """
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def register_family(prefix: str, resolve: Callable[[str], ModelEntry]) -> None:
    """Let ``prefix + name`` create models by `resolve(name)`, e.g. ``timm:resnet18``.

    Raises:
        ValueError: the prefix is taken.
    """
    if prefix in _FAMILIES:
        raise ValueError(f"model family {prefix!r} is already registered")
    _FAMILIES[prefix] = resolve


def register_model(
    name: str | None = None, *, preprocessing: Preprocessing = Preprocessing(), fast_bf16: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder ``fn(*, num_classes, in_chans, input_size, **kwargs)``.

    Raises:
        ValueError: the name is taken.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (builder.__doc__ or "").strip().splitlines()
        add_entry(ModelEntry(name or builder.__name__, builder, preprocessing, doc[0] if doc else "", fast_bf16))
        return builder

    return decorate


def add_entry(entry: ModelEntry) -> None:
    """Register a ready entry (builders made in a loop, e.g. the timm short names).

    Raises:
        ValueError: the name is taken.
    """
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def model_entry(name: str) -> ModelEntry:
    """Raises: FerlabError: no model of that name (the message lists close matches)."""
    _builtin_registered()
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, resolve in _FAMILIES.items():
        if name.startswith(prefix):
            return resolve(name[len(prefix):])
    close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    families = "".join(f", or {prefix}<name>" for prefix in _FAMILIES)
    raise FerlabError(f"unknown model {name!r}; {hint}registered: {', '.join(list_models())}{families}")


def list_models(pattern: str = "*") -> list[str]:
    _builtin_registered()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int | None = None,
    input_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; input defaults come from its registration.

    Raises:
        FerlabError: unknown name, or options the model does not take.
    """
    entry = model_entry(name)
    try:
        return entry.builder(
            num_classes=num_classes,
            in_chans=in_chans or entry.preprocessing.channels,
            input_size=input_size or entry.preprocessing.input_size,
            **kwargs,
        )
    except TypeError as err:
        raise FerlabError(f"model {name!r}: {err}") from None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_input(model: nn.Module, name: str, in_chans: int, input_size: int) -> None:
    """Run a zero batch through `model` so that an input it cannot take fails before any data is read.

    Raises:
        FerlabError: the forward pass fails; names the model and the input.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, input_size, input_size))
    except (RuntimeError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FerlabError(f"model {name!r} cannot take {in_chans}x{input_size}x{input_size} input: {first}") from None
    finally:
        model.train(was_training)
