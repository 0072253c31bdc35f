"""The package's layers import one way: every import in src/ferlab, in-function ones and lazy names included.

The order (also in docs/architecture.md): core < data < models < {inference, training};
evaluation on inference and models; experiments (compare, tune, suspects, reproduce) above training
and evaluation; serving on inference; the CLI and the package facade on anything.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Each layer and the layers it may import (besides itself).
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "models": {"core", "data"},
    "inference": {"core", "data", "models"},
    "training": {"core", "data", "models"},
    "evaluation": {"core", "data", "models", "inference"},
    "experiments": {"core", "data", "models", "inference", "training", "evaluation"},
    "serving": {"core", "data", "models", "inference"},
    "top": {"core", "data", "models", "inference", "training", "evaluation", "experiments", "serving"},
}
#: Names kept at their old places for one release, each an import against the order (module -> target).
DEPRECATED_ALIASES = {
    "ferlab.training.compare -> ferlab.experiments.compare",
    "ferlab.training.tune -> ferlab.experiments.tune",
    "ferlab.training.search_space -> ferlab.experiments.search_space",
    "ferlab.evaluation.suspects -> ferlab.experiments.suspects",
    "ferlab.models -> ferlab.evaluation.explain",
}


def layer(module: str) -> str:
    parts = module.split(".")
    if module in ("ferlab", "ferlab.cli", "ferlab._commands"):
        return "top"
    return parts[1] if len(parts) > 2 or parts[1] in ALLOWED else "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> set[str]:
    """ferlab modules named by import statements, `importlib.import_module("...")` and `_LAZY` maps."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            found.update(v.value for v in getattr(node.value, "values", []) if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "BUILTIN_MODULES" for t in node.targets):
            found.update(e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant))
    return {name for name in found if name == "ferlab" or name.startswith("ferlab.")}


def edges() -> set[str]:
    return {f"{module_name(path)} -> {target}" for path in (SRC / "ferlab").rglob("*.py")
            for target in imported(ast.parse(path.read_text(encoding="utf-8")))}


def is_against(edge: str) -> bool:
    source, target = edge.split(" -> ")
    # The package root as a target gives only its eager names, __version__ and FerlabError: core.
    importer, imported_layer = layer(source), "core" if target == "ferlab" else layer(target)
    return importer != imported_layer and imported_layer not in ALLOWED[importer]


def test_every_import_follows_the_layer_order():
    against = sorted(edge for edge in edges() - DEPRECATED_ALIASES if is_against(edge))
    print("\n".join(sorted(edges())))  # the graph, shown with pytest -s
    assert not against, "imports against the layer order:\n" + "\n".join(against)


def test_the_deprecated_aliases_are_still_there_and_nothing_else_is_excused():
    assert DEPRECATED_ALIASES <= edges()


def test_the_torch_free_modules_never_import_torch():
    """What `pip install ferlab` runs: the inference path (ONNX Runtime) and what it reads."""
    light = ["ferlab/models/backend.py", "ferlab/models/onnx_runtime.py", "ferlab/models/meta.py",
             "ferlab/models/files.py", "ferlab/models/catalog.py", "ferlab/models/bundled/__init__.py",
             "ferlab/data/transforms.py",
             "ferlab/data/inputs.py", "ferlab/inference/recognizer.py", "ferlab/inference/faces.py",
             "ferlab/inference/detect.py", "ferlab/inference/files.py", "ferlab/inference/results.py"]
    for name in light:
        tree = ast.parse((SRC / name).read_text(encoding="utf-8"))
        top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert not top & {"torch", "torchvision", "timm", "lightning"}, name


def test_the_breaks_this_order_removed_would_be_caught():
    for edge in ("ferlab.training.compare -> ferlab.evaluation", "ferlab.evaluation.suspects -> ferlab.training",
                 "ferlab.models.explain -> ferlab.inference.files", "ferlab.inference.video -> ferlab.training"):
        assert is_against(edge), edge
    assert not is_against("ferlab.experiments.compare -> ferlab.evaluation")


def test_no_lazy_name_is_shadowed_by_a_submodule():
    """A submodule named like a lazy export replaces it once imported (`from ferlab.inference import annotate`)."""
    import importlib
    import pkgutil

    import ferlab

    for found in pkgutil.walk_packages(ferlab.__path__, "ferlab."):
        package = importlib.import_module(found.name) if found.ispkg else None
        lazy = getattr(package, "_LAZY", {})
        submodules = {sub.name for sub in pkgutil.iter_modules(package.__path__)} if lazy else set()
        assert not set(lazy) & submodules, (found.name, set(lazy) & submodules)
