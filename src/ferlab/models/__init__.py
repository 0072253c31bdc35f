"""Models: the registry, the architectures, and their on-disk format."""

from ferlab.models import cnn as _cnn  # noqa: F401  (registers the from-scratch CNNs)
from ferlab.models.io import LoadedModel, build_model, load_model, save_model
from ferlab.models.meta import ModelMeta
from ferlab.models.registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "ModelMeta",
    "build_model",
    "create_model",
    "list_models",
    "load_model",
    "model_entry",
    "register_model",
    "save_model",
]
