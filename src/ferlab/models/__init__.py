"""Models: the registry, the architectures, and their on-disk format."""

from ferlab.models import cnn as _cnn  # noqa: F401  (registers the from-scratch CNNs)
from ferlab.models import transfer as _transfer  # noqa: F401  (registers the timm backbones and timm:<name>)
from ferlab.models import xception as _xception  # noqa: F401  (registers mini_xception)
from ferlab.models.ensemble import Ensemble, save_ensemble  # also registers "ensemble"
from ferlab.models.explain import explain_files, grad_cam, overlay_heatmap
from ferlab.models.freezing import FREEZE_POLICIES, apply_freeze, parameter_blocks
from ferlab.models.io import LoadedModel, build_model, load_model, save_model
from ferlab.models.meta import ModelMeta
from ferlab.models.registry import (
    ModelEntry,
    check_input,
    count_parameters,
    create_model,
    list_models,
    model_entry,
    register_model,
)

__all__ = [
    "FREEZE_POLICIES",
    "Ensemble",
    "LoadedModel",
    "ModelEntry",
    "ModelMeta",
    "apply_freeze",
    "build_model",
    "check_input",
    "count_parameters",
    "create_model",
    "explain_files",
    "grad_cam",
    "list_models",
    "load_model",
    "model_entry",
    "overlay_heatmap",
    "parameter_blocks",
    "register_model",
    "save_ensemble",
    "save_model",
]
