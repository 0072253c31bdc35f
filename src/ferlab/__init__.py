"""ferlab: train, compare, evaluate and deploy facial expression recognition models.

Heavy stages (training imports Lightning) load on first use, so
``import ferlab`` stays quick for inference.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ferlab._lazy import lazy_names
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
    "Predictor": "ferlab.inference",  # deprecated: Recognizer
    "Recognizer": "ferlab.inference",
    "predict_files": "ferlab.inference",  # deprecated: Recognizer.predict_files
    "process_video": "ferlab.inference",
    "export_onnx": "ferlab.models.onnx",
}

__all__ = ["FerlabError", "__version__", *_LAZY]


__getattr__, __dir__ = lazy_names(__name__, _LAZY)
