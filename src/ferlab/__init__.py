"""ferlab: train, compare, evaluate and deploy facial expression recognition models.

Heavy stages (training imports Lightning) load on first use, so
``import ferlab`` stays quick for inference.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ferlab.errors import FerlabError

try:
    __version__ = version("ferlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_LAZY = {
    "open_dataset": "ferlab.data",
    "create_model": "ferlab.models",
    "list_models": "ferlab.models",
    "load_model": "ferlab.models",
    "save_ensemble": "ferlab.models",
    "scan": "ferlab.data",
    "TrainConfig": "ferlab.training",
    "load_config": "ferlab.training",
    "train": "ferlab.training",
    "evaluate": "ferlab.evaluation",
    "report": "ferlab.evaluation",
    "Predictor": "ferlab.inference",
    "Recognizer": "ferlab.inference",
    "predict_files": "ferlab.inference",
    "process_video": "ferlab.inference",
    "export_onnx": "ferlab.models.onnx",
}

__all__ = ["FerlabError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferlab' has no attribute {name!r}")
