"""The reference models shipped inside the package, so that inference works offline right after install.

A bundled model is named where a model path is expected: ``load_model("fast")``,
``ferlab predict --model accurate``. The name is matched only as a plain string;
a folder that happens to have the same name is reached as ``./fast`` or a `Path`.
Each model's folder holds ``model.safetensors``, ``model.json``, ``model.onnx`` (the same
model with its metadata embedded, which the torch-free inference install runs) and
``MODEL_CARD.md`` (data, recipe, measured accuracy and limits), written by
``benchmarks/reference_models.py``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ferlab.errors import FerlabError

__all__ = ["BUNDLED", "DEFAULT_MODEL", "bundled_dir", "describe_bundled", "is_bundled", "resolve_model"]

BUNDLED: dict[str, str] = {
    "fast": "real-time CNN for CPUs and video (the default)",
    "accurate": "the most accurate reference model, slower",
}
DEFAULT_MODEL = "fast"


def bundled_dir(name: str) -> Path:
    """The folder of bundled model `name`.

    Raises:
        FerlabError: an unknown name, or a package installed without the model's files.
    """
    if name not in BUNDLED:
        raise FerlabError(f"no bundled model {name!r}; bundled: {', '.join(BUNDLED)}")
    folder = Path(str(resources.files(__name__) / name))
    if not (folder / "model.safetensors").is_file():
        raise FerlabError(f"the bundled model {name!r} is missing from this installation ({folder}); "
                          "reinstall ferlab, or pass a run folder with --model")
    return folder


def is_bundled(model: str | Path) -> bool:
    """Whether `model` names a bundled model (a plain string such as ``"fast"``, not a `Path`)."""
    return isinstance(model, str) and model in BUNDLED


def resolve_model(model: str | Path) -> Path:
    """A model argument as a path: a bundled name becomes its folder; anything else is taken as a path."""
    return bundled_dir(model) if is_bundled(model) else Path(model).expanduser()


def describe_bundled(name: str) -> str:
    """One line on bundled model `name`: its purpose, architecture, input and the test-time views it uses.

    Read from its ``model.json`` as stored (no model is built), for ``ferlab models``.
    """
    meta = json.loads((bundled_dir(name) / "model.json").read_text(encoding="utf-8"))
    prep = meta["preprocessing"]
    size = prep["input_size"]
    crop = f" crops of {prep['resize']}px images" if prep.get("resize") else ""
    return (f"{name}: {BUNDLED[name]} ({meta['architecture']}, {size}x{size}x{prep['channels']}{crop}, "
            f"test-time augmentation {meta.get('tta', 'none')})")
