"""Saving and loading models as safetensors weights plus JSON metadata (never pickles)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ferlab._io import atomic_path, write_json
from ferlab.data.transforms import normalize
from ferlab.errors import FerlabError
from ferlab.models.meta import ModelMeta
from ferlab.models.registry import create_model

__all__ = ["LoadedModel", "build_model", "load_model", "save_model"]

WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"


def build_model(meta: ModelMeta) -> nn.Module:
    """A freshly initialised model as `meta` describes it."""
    prep = meta.preprocessing
    return create_model(
        meta.architecture,
        num_classes=len(meta.classes),
        in_chans=prep.channels,
        input_size=prep.input_size,
        **meta.model_kwargs,
    )


def save_model(model: nn.Module, meta: ModelMeta, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into `directory`; returns the weights path.

    A model with a ``stored_kwargs()`` method (an ensemble) saves those as its builder
    arguments, so that ``model.json`` does not depend on the files it was built from.
    """
    stored_kwargs = getattr(model, "stored_kwargs", None)
    if callable(stored_kwargs):
        meta = replace(meta, model_kwargs=stored_kwargs())
    directory = Path(directory)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt"})
    write_json(directory / META_NAME, meta.to_dict())
    return directory / WEIGHTS_NAME


def _model_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return path / WEIGHTS_NAME, path / META_NAME
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path, path.with_suffix(".json")


@dataclass
class LoadedModel:
    """A model in eval mode with its metadata."""

    module: nn.Module
    meta: ModelMeta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @torch.inference_mode()
    def predict_proba(self, pixels: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Class probabilities for uint8 images (N, C, H, W) prepared with `to_pixels`; shape (N, classes)."""
        chunks = [
            torch.softmax(self.module(normalize(batch, self.meta.preprocessing)), dim=1)
            for batch in torch.split(pixels, batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, len(self.classes)), dtype=np.float32)


def load_model(path: str | Path) -> LoadedModel:
    """Load a model from a run folder, its ``.safetensors`` file or its ``.json`` file.

    Raises:
        FerlabError: a file is missing or does not match the metadata.
    """
    weights_path, meta_path = _model_files(Path(path).expanduser())
    for needed in (weights_path, meta_path):
        if not needed.is_file():
            raise FerlabError(f"no model at {path}: {needed} is missing (expected a run folder or a .safetensors file with its .json)")
    try:
        meta = ModelMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")), str(meta_path))
    except json.JSONDecodeError as err:
        raise FerlabError(f"{meta_path}: not valid JSON ({err})") from None
    module = build_model(meta)
    try:
        module.load_state_dict(load_file(str(weights_path)))
    except (SafetensorError, RuntimeError, OSError) as err:
        raise FerlabError(f"{weights_path} does not fit the {meta.architecture} described in {meta_path}: {err}") from None
    module.eval()
    return LoadedModel(module, meta)
