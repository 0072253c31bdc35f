"""Search spaces for `ferlab.experiments.tune`: which config keys a search samples, and from what.

A space is a YAML file (or `SearchSpace` built in Python) mapping dotted training
config keys to distributions. Keys and value types are checked against
`TrainConfig` when the space is made, so a typo fails before the first trial
rather than in every one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ferlab.errors import FerlabError
from ferlab.rundir import read_yaml
from ferlab.training.config import TrainConfig

__all__ = ["METRICS", "PARAM_TYPES", "Param", "SearchSpace", "load_space"]

PARAM_TYPES = ("float", "int", "categorical")
#: Metrics a search can maximise; training keeps the epoch with the best val_acc, so only that one for now.
METRICS = ("val_acc",)
_FIELDS = {
    "float": {"low", "high", "log", "step", "grid"},
    "int": {"low", "high", "log", "step", "grid"},
    "categorical": {"choices"},
}
_TOP_KEYS = ("base", "metric", "space", "pruner")
_PRUNER_KEYS = ("n_startup_trials", "n_warmup_steps")
_FREE_PREFIX = "model.kwargs."  # builder options differ per model, so any name is accepted
_RESERVED = ("out", "data.path")  # `tune` sets these for every trial
_MISSING = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One searched config key.

    Attributes:
        key: a dotted `TrainConfig` key (``optim.lr``) or a builder option (``model.kwargs.dropout``).
        type: float, int or categorical.
        low, high: the inclusive range of a float or int param.
        step: spacing of the values (int default 1); not with `log`.
        log: sample uniformly in log space (needs ``low > 0``).
        choices: the values of a categorical param (None, bool, int, float or str: what Optuna stores).
        grid: the values a grid search tries for a float or int param; by default an
            int's whole range and a stepped float's steps.

    Raises:
        FerlabError: naming the key and what is wrong with it.
    """

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    grid: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise FerlabError(f"search space key {self.key}: {problem}")

    def _problem(self) -> str | None:
        if self.type not in PARAM_TYPES:
            return f"type must be one of {PARAM_TYPES}, got {self.type!r}"
        if self.type == "categorical":
            if not isinstance(self.choices, tuple) or not self.choices:
                return "categorical needs a non-empty list of choices"
            if any(c is not None and not isinstance(c, (bool, int, float, str)) for c in self.choices):
                return f"choices must be None, booleans, numbers or strings, got {list(self.choices)}"
            if len(set(map(repr, self.choices))) < len(self.choices):
                return f"choices repeat a value: {list(self.choices)}"
            return None
        number = int if self.type == "int" else (int, float)
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if (value is not None or name != "step") and not (_is_number(value) and isinstance(value, number)):
                return f"{name} must be {'an integer' if self.type == 'int' else 'a number'}, got {value!r}"
        assert self.low is not None and self.high is not None
        if not self.low < self.high:
            return f"low ({self.low}) must be below high ({self.high})"
        if self.step is not None and self.step <= 0:
            return f"step must be positive, got {self.step}"
        if not isinstance(self.log, bool):
            return f"log must be true or false, got {self.log!r}"
        if self.log and self.low <= 0:
            return f"log needs low > 0, got {self.low}"
        if self.log and self.step is not None:
            return "log and step exclude each other"
        if self.grid is not None:
            if self.step is not None:
                return "grid and step exclude each other"
            if not isinstance(self.grid, tuple) or not self.grid:
                return "grid must be a non-empty list"
            if not all(_is_number(v) and isinstance(v, number) and self.low <= v <= self.high for v in self.grid):
                return f"grid values must be {self.type}s within [{self.low}, {self.high}], got {list(self.grid)}"
        return None

    def candidates(self) -> list[Any]:
        """Values that span the param, to type-check it against the config."""
        if self.type == "categorical":
            return list(self.choices)
        return [self.low, self.high, *(self.grid or ())]

    def grid_values(self) -> list[Any] | None:
        """What a grid search tries; None for a float without `grid` or `step`."""
        if self.type == "categorical":
            return list(self.choices)
        if self.grid is not None:
            return list(self.grid)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = math.floor((self.high - self.low) / self.step + 1e-9)  # tolerance: 0.1 steps do not add up exactly
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def suggest(self, trial: Any) -> Any:
        """Sample this param in an `optuna.Trial`."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def _key_problem(param: Param) -> str | None:
    """Why `param` cannot set a `TrainConfig` field (unknown key, a section, a value of the wrong type), or None."""
    if param.key in _RESERVED:
        return "is set by tune for every trial and cannot be searched"
    cfg = OmegaConf.structured(TrainConfig)
    if param.key.startswith(_FREE_PREFIX):
        if len(param.key) == len(_FREE_PREFIX) or "." in param.key[len(_FREE_PREFIX):]:
            return f"a builder option is {_FREE_PREFIX}<name>"
    else:
        node = OmegaConf.select(cfg, param.key, default=_MISSING)
        if node is _MISSING:
            return "is not a training config field (see configs/cnn3_bn.yaml)"
        if OmegaConf.is_config(node):
            return "is a config section, not a field"
    for value in param.candidates():
        try:
            OmegaConf.update(cfg, param.key, value, merge=False)
        except OmegaConfBaseException as err:
            return f"value {value!r} does not fit the config field: {str(err).splitlines()[0]}"
    return None


@dataclass(frozen=True)
class SearchSpace:
    """The params a search samples, the config its trials start from, and how it prunes.

    Attributes:
        base: a training config YAML the trials start from (None: the defaults).
        metric: what the search maximises (see `METRICS`).
        n_startup_trials: trials run to the end before the median pruner may stop any.
        n_warmup_steps: epochs every trial runs before it may be pruned.
        name: the default study name.
        source: where the space came from, for error messages.

    Raises:
        FerlabError: naming `source` and the first bad key.
    """

    params: tuple[Param, ...]
    base: Path | None = None
    metric: str = "val_acc"
    n_startup_trials: int = 5
    n_warmup_steps: int = 3
    name: str = "search"
    source: str = "search space"

    def __post_init__(self) -> None:
        if not self.params:
            raise FerlabError(f"{self.source}: the space has no params")
        keys = [p.key for p in self.params]
        if len(set(keys)) < len(keys):
            raise FerlabError(f"{self.source}: a key appears twice in {keys}")
        if self.metric not in METRICS:
            raise FerlabError(f"{self.source}: metric must be one of {METRICS}, got {self.metric!r}")
        for name in _PRUNER_KEYS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FerlabError(f"{self.source}: pruner.{name} must be an integer >= 0, got {value!r}")
        for param in self.params:
            problem = _key_problem(param)
            if problem:
                raise FerlabError(f"{self.source}: search space key {param.key} {problem}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def grid(self) -> dict[str, list[Any]]:
        """Every param's grid values, for `optuna.samplers.GridSampler`.

        Raises:
            FerlabError: a float param with neither `grid` nor `step`.
        """
        grid = {p.key: p.grid_values() for p in self.params}
        missing = [key for key, values in grid.items() if values is None]
        if missing:
            raise FerlabError(f"{self.source}: the grid sampler needs a grid for float params {missing}; "
                              "give each `grid: [...]` or a `step`")
        return {key: values for key, values in grid.items() if values is not None}


def _mapping(value: Any, where: str, source: Path) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FerlabError(f"{source}: {where} must be a mapping, got {value!r}")
    return value


def load_space(path: str | Path) -> SearchSpace:
    """Read a search space YAML file: ``base``, ``metric``, ``pruner`` and ``space`` (see configs/search/).

    Raises:
        FerlabError: unreadable file, unknown keys, bad types or ranges; names the file and the key.
    """
    path = Path(path).expanduser()
    raw = read_yaml(path, "search space file")
    raw = _mapping(raw, "the file", path)
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise FerlabError(f"{path}: unknown keys {unknown}; a search space has {list(_TOP_KEYS)}")
    params = []
    for key, spec in _mapping(raw.get("space"), "space", path).items():
        spec = dict(_mapping(spec, f"space.{key}", path))
        kind = spec.pop("type", None)
        if kind not in _FIELDS:
            raise FerlabError(f"{path}: search space key {key}: type must be one of {PARAM_TYPES}, got {kind!r}")
        extra = sorted(set(spec) - _FIELDS[kind])
        if extra:
            raise FerlabError(f"{path}: search space key {key}: {kind} takes {sorted(_FIELDS[kind])}, not {extra}")
        for name in ("choices", "grid"):
            if name in spec:
                if not isinstance(spec[name], list):
                    raise FerlabError(f"{path}: search space key {key}: {name} must be a list, got {spec[name]!r}")
                spec[name] = tuple(spec[name])
        try:
            params.append(Param(key=str(key), type=kind, **spec))
        except FerlabError as err:
            raise FerlabError(f"{path}: {err}") from None
    pruner = _mapping(raw.get("pruner") or {}, "pruner", path)
    unknown = sorted(set(pruner) - set(_PRUNER_KEYS))
    if unknown:
        raise FerlabError(f"{path}: unknown pruner keys {unknown}; the median pruner takes {list(_PRUNER_KEYS)}")
    base = raw.get("base")
    if base is not None:
        if not isinstance(base, str):
            raise FerlabError(f"{path}: base must be a path to a training config, got {base!r}")
        base = (path.parent / Path(base).expanduser()).resolve()  # relative to the space file, not the caller
        if not base.is_file():
            raise FerlabError(f"{path}: base config {base} does not exist")
    return SearchSpace(
        params=tuple(params),
        base=base,
        metric=raw.get("metric", "val_acc"),
        name=path.stem,
        source=str(path),
        **pruner,
    )
