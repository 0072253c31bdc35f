"""Experiments: workflows that train and evaluate, above both (as detectron2's ``engine`` sits above
``modeling`` and ``evaluation``): config grids over seeds (`compare`), Optuna searches (`tune`),
the k-fold label-noise finder (`find_suspects`) and chains of runs rebuilt from a recipe (`reproduce`).
Neither training nor evaluation imports this package.

Unlike the lower packages this one imports its names eagerly: every experiment needs the training
stack anyway, and `compare` and `tune` share their modules' names, so a lazy namespace would hand
out the function or the module depending on import order. The modules are
``sys.modules["ferlab.experiments.tune"]`` (or `importlib.import_module`).
"""

from ferlab.experiments.compare import CompareGrid, CompareResult, compare, load_grid
from ferlab.experiments.recipes import Recipe, ReproduceResult, load_recipe, reproduce
from ferlab.experiments.search_space import SearchSpace, load_space
from ferlab.experiments.suspects import find_suspects
from ferlab.experiments.tune import TuneResult, tune

__all__ = [
    "CompareGrid",
    "CompareResult",
    "Recipe",
    "ReproduceResult",
    "SearchSpace",
    "TuneResult",
    "compare",
    "find_suspects",
    "load_grid",
    "load_recipe",
    "load_space",
    "reproduce",
    "tune",
]
