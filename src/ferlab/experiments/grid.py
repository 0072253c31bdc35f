"""The experiments layer's one grid: every combination of one value per axis.

`compare` expands its grid files with it (an axis's values are options that each set one or more
config keys), and `tune --sampler grid` counts its space's grid with it before handing the same
axes to Optuna's `GridSampler`, which lets workers sharing a study split the grid between them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["grid_points"]


def grid_points(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination ``{axis: value}`` of one value per axis, the first axis varying slowest."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
