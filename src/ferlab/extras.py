"""Which optional extra provides a package, so a command run without it says what to install.

``pip install ferlab`` is the inference install (ONNX Runtime, no torch); ``ferlab[train]``
adds training, evaluation, experiments and export, ``ferlab[serve]`` the web app and API.
"""

from __future__ import annotations

__all__ = ["EXTRA_OF", "missing_extra"]

#: Top-level import names of each extra's packages (pyproject.toml's optional dependencies).
EXTRA_OF = {
    **dict.fromkeys(("torch", "torchvision", "timm", "lightning", "torchmetrics", "sklearn", "yaml",
                     "omegaconf", "safetensors", "optuna", "sqlalchemy", "cleanlab", "captum", "onnx", "onnxscript"),
                    "train"),
    **dict.fromkeys(("gradio", "pandas", "fastapi", "uvicorn", "multipart"), "serve"),
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """The message for an import that failed because an extra is not installed, or None for any other."""
    package = (err.name or "").split(".")[0]
    extra = EXTRA_OF.get(package)
    if extra is None:
        return None
    return f"this needs {package}, from the {extra} extra, which is not installed: pip install 'ferlab[{extra}]'"
