"""Create models by name: one registry, one factory."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture and the input it expects unless told otherwise."""

    name: str
    builder: Callable[..., nn.Module]
    preprocessing: Preprocessing
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None, *, preprocessing: Preprocessing = Preprocessing()
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a builder ``fn(*, num_classes, in_chans, input_size, **kwargs)``.

    Raises:
        ValueError: the name is taken.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(key, builder, preprocessing, doc[0] if doc else "")
        return builder

    return decorate


def model_entry(name: str) -> ModelEntry:
    """Raises: FerlabError: no model of that name."""
    if name not in _REGISTRY:
        raise FerlabError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
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
