"""Models: the registry, the architectures, and their on-disk format.

Names load on first use (PEP 562): the ONNX Runtime backend, metadata and bundled
models need no torch, and importing them must not pull in timm and the architectures.
"""

from ferlab._lazy import lazy_names

#: Each public name and the module that defines it.
_LAZY = {
    "FREEZE_POLICIES": "ferlab.models.freezing",
    "Ensemble": "ferlab.models.ensemble",
    "LoadedModel": "ferlab.models.io",
    "ModelBackend": "ferlab.models.backend",
    "ModelEntry": "ferlab.models.registry",
    "ModelMeta": "ferlab.models.meta",
    "OnnxModel": "ferlab.models.onnx_runtime",
    "apply_freeze": "ferlab.models.freezing",
    "build_model": "ferlab.models.io",
    "check_input": "ferlab.models.registry",
    "count_parameters": "ferlab.models.registry",
    "create_model": "ferlab.models.registry",
    "explain_files": "ferlab.evaluation.explain",
    "grad_cam": "ferlab.models.explain",
    "list_models": "ferlab.models.registry",
    "load_model": "ferlab.models.io",
    "model_entry": "ferlab.models.registry",
    "overlay_heatmap": "ferlab.models.explain",
    "parameter_blocks": "ferlab.models.freezing",
    "register_model": "ferlab.models.registry",
    "save_ensemble": "ferlab.models.ensemble",
    "save_model": "ferlab.models.io",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(__name__, _LAZY)
