"""Saving and loading models as safetensors weights plus JSON metadata (never pickles)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ferlab._io import atomic_path, write_json
from ferlab.data.tensors import normalize
from ferlab.errors import FerlabError
from ferlab.models.backend import ModelBackend
from ferlab.models.bundled import bundled_dir, is_bundled, resolve_model
from ferlab.models.files import META_NAME, WEIGHTS_NAME, model_files, read_meta, require_file
from ferlab.models.meta import ModelMeta
from ferlab.models.registry import create_model

__all__ = ["LoadedModel", "build_model", "load_model", "save_model", "save_temperature"]

# The weights files being loaded right now, outermost first: an ensemble member among them is a cycle.
_LOADING: set[Path] = set()


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


class LoadedModel(ModelBackend):
    """A PyTorch model in eval mode with its metadata."""

    def __init__(self, module: nn.Module, meta: ModelMeta) -> None:
        self.module = module
        self.meta = meta

    def view_logits(self, views: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(normalize(views, self.meta.preprocessing)).float().numpy()


def save_temperature(path: str | Path, temperature: float) -> Path:
    """Store `temperature` in a saved model's ``model.json`` atomically; other fields and the weights stay as they were.

    Args:
        path: a run folder, or the model's ``.safetensors`` or ``.json`` file.

    Returns:
        The metadata file written.

    Raises:
        FerlabError: no valid metadata at `path`, a bundled model (part of the installed package, never
            changed in place), or a temperature that is not positive and finite.
    """
    if is_bundled(path):
        raise FerlabError(f"{path!r} is a bundled model and is not changed in place; copy its folder "
                          f"({bundled_dir(path)}) and calibrate the copy")
    meta_path = model_files(Path(path).expanduser())[1]
    data, meta = read_meta(meta_path, path)
    data["temperature"] = replace(meta, temperature=temperature).temperature  # validated, a plain float
    write_json(meta_path, data)
    return meta_path


def load_model(path: str | Path) -> LoadedModel:
    """Load a model from a run folder, its ``.safetensors`` file or its ``.json`` file.

    Raises:
        FerlabError: a file is missing or does not match the metadata.
    """
    weights_path, meta_path = model_files(resolve_model(path))
    require_file(weights_path, path)
    meta = read_meta(meta_path, path)[1]
    key = weights_path.resolve()
    if key in _LOADING:  # an ensemble that lists itself, directly or through another ensemble
        raise FerlabError(f"{weights_path} contains itself: an ensemble cannot be its own member")
    _LOADING.add(key)
    try:
        _check_shapes(meta, weights_path, meta_path)
        module = _build(meta, meta_path)
    finally:
        _LOADING.discard(key)
    try:
        module.load_state_dict(load_file(str(weights_path)))
    except (SafetensorError, RuntimeError, OSError) as err:
        raise FerlabError(f"{weights_path} does not fit the {meta.architecture} described in {meta_path}: {err}") from None
    module.eval()
    return LoadedModel(module, meta)


def _build(meta: ModelMeta, meta_path: Path, device: str = "cpu") -> nn.Module:
    """`build_model` for loaded weights, with a builder's complaint about its arguments (negative widths...) named
    as the file's. A transfer model's ``pretrained`` source is left out: the weights file replaces those weights,
    so loading needs neither that file nor the hub."""
    kwargs = {k: v for k, v in meta.model_kwargs.items() if k != "pretrained"}
    try:
        with torch.device(device):
            return build_model(replace(meta, model_kwargs=kwargs))
    except RecursionError:  # ensembles of member metadata nested thousands deep
        raise FerlabError(f"{meta_path}: the model nests too deeply") from None
    except (TypeError, ValueError, RuntimeError) as err:
        raise FerlabError(f"{meta_path}: cannot build {meta.architecture} with model_kwargs "
                          f"{meta.model_kwargs}: {str(err).splitlines()[0]}") from None


def _check_shapes(meta: ModelMeta, weights_path: Path, meta_path: Path) -> None:
    """Compare the tensors `meta` describes with the file's before allocating any: a hostile model.json (a width of
    10^6) is refused by its shapes, which cost nothing on torch's meta device, not by filling memory."""
    described = {k: tuple(v.shape) for k, v in _build(meta, meta_path, device="meta").state_dict().items()}
    try:
        with safe_open(str(weights_path), framework="pt") as weights:
            stored = {k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()}
    except (SafetensorError, OSError) as err:
        raise FerlabError(f"{weights_path}: not a readable safetensors file ({err})") from None
    differing = sorted(k for k in described.keys() | stored.keys() if described.get(k) != stored.get(k))
    if differing:
        key = differing[0]
        raise FerlabError(f"{weights_path} does not fit the {meta.architecture} described in {meta_path}: "
                          f"{len(differing)} tensors differ, e.g. {key}: described {described.get(key)}, "
                          f"stored {stored.get(key)}")
