"""Where a saved model's files are, and its metadata read from ``model.json``: no torch needed.

Shared by the PyTorch loader (`ferlab.models.io`) and the ONNX Runtime path of
inference, which reads the metadata to check that a run's ``model.onnx`` is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError
from ferlab.models.meta import ModelMeta

__all__ = ["META_NAME", "WEIGHTS_NAME", "model_files", "read_meta", "require_file"]

WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"


def model_files(path: Path) -> tuple[Path, Path]:
    """The weights and metadata files of a run folder, a ``.safetensors`` file or a ``.json`` file.

    Raises:
        FerlabError: `path` is an ONNX export, which has neither (what takes one loads it with `load_classifier`).
    """
    if path.suffix.lower() == ".onnx":
        raise FerlabError(f"{path} is an ONNX export, which holds no PyTorch weights; this needs the run folder or "
                          "model .safetensors it was exported from")
    if path.is_dir():
        return path / WEIGHTS_NAME, path / META_NAME
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path, path.with_suffix(".json")


def require_file(needed: Path, given: str | Path) -> None:
    """Raises: FerlabError: `needed` (a file of the model `given`) is missing."""
    if not needed.is_file():
        raise FerlabError(f"no model at {given}: {needed} is missing "
                          "(expected a run folder or a .safetensors file with its .json)")


def read_meta(meta_path: Path, given: str | Path) -> tuple[dict[str, Any], ModelMeta]:
    """The metadata file as stored (a dict) and as loaded.

    Raises:
        FerlabError: a missing file, invalid JSON, or metadata `ModelMeta` refuses (named).
    """
    require_file(meta_path, given)
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FerlabError(f"{meta_path}: not valid JSON ({err})") from None
    except RecursionError:
        raise FerlabError(f"{meta_path}: JSON nested too deeply to be a model's metadata") from None
    if not isinstance(data, dict):
        raise FerlabError(f"{meta_path}: expected a JSON object, got {type(data).__name__}")
    return data, ModelMeta.from_dict(data, str(meta_path))
