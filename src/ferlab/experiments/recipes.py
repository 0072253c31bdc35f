"""`reproduce(recipe, data=..., out=...)`: a model rebuilt from scratch, stage by stage, across sessions.

A bundled model is often the last of several runs: a base run, a fine-tune that starts from its
weights (``model.init``), a student distilled from it (``distill.teacher``). A config alone names
those inputs as whatever model sits under a name today (``init: accurate``), so it does not say how
to rebuild the model once that name points at a newer one. A recipe lists the stages and binds each
stage's inputs to the runs of earlier stages, so the whole chain can be rerun, and no stage may
reach outside it.

Each stage trains into ``OUT/<stage name>``. Running the recipe again reuses finished stages,
resumes an interrupted one from its last checkpoint, and refuses a stage folder trained under other
settings, so a chain of runs longer than a session carries on with the same command.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch.callbacks import Callback

from ferlab.errors import FerlabError
from ferlab.evaluation.curves import read_metrics
from ferlab.rundir import RunDir, read_yaml
from ferlab.training.config import TrainConfig, changed_fields, load_config
from ferlab.training.train import resume, train

__all__ = ["Recipe", "ReproduceResult", "Stage", "StageResult", "StageState", "load_recipe", "recipe_status",
           "reproduce", "stage_configs"]

log = logging.getLogger(__name__)

STAGE_FIELDS = ("name", "config", "init", "teacher")
#: The config field each stage input binds, and the stage key that binds it.
STAGE_INPUTS = {"init": "model.init", "teacher": "distill.teacher"}
#: Config keys a recipe sets for every stage; neither the stage configs nor overrides choose them.
SET_BY_RECIPE = {"data.path", "out", *STAGE_INPUTS.values()}
_STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe: its config, and the earlier stages whose models it starts from or learns from."""

    name: str
    config: Path
    init: str | None = None
    teacher: str | None = None


@dataclass(frozen=True)
class Recipe:
    """Stages in training order; the last one trains the recipe's model."""

    source: Path
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class StageResult:
    """How one stage ended this time: trained from epoch 1, resumed from a checkpoint, or reused as it was."""

    name: str
    run_dir: Path
    status: Literal["trained", "resumed", "reused"]
    best_val_acc: float
    best_epoch: int
    epochs_run: int
    seconds: float


@dataclass(frozen=True)
class ReproduceResult:
    stages: tuple[StageResult, ...]

    @property
    def model_dir(self) -> Path:
        """The run folder of the last stage: the recipe's model."""
        return self.stages[-1].run_dir


def _stage(entry: Any, index: int, earlier: Sequence[str], source: Path) -> Stage:
    """One stage entry, checked: a new folder-safe name, an existing config, inputs naming earlier stages."""
    where = f"{source}: stages[{index}]"
    if not isinstance(entry, dict):
        raise FerlabError(f"{where}: expected a mapping with {', '.join(STAGE_FIELDS)}, got {entry!r}")
    unknown = sorted(set(entry) - set(STAGE_FIELDS))
    if unknown:
        raise FerlabError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; a stage has {', '.join(STAGE_FIELDS)}")
    name, config = entry.get("name"), entry.get("config")
    if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
        raise FerlabError(f"{where}.name: {name!r} is not a folder name (letters, digits, '.', '_', '-')")
    if name in earlier:
        raise FerlabError(f"{where}.name: {name!r} names two stages")
    if not isinstance(config, str):
        raise FerlabError(f"{where}.config: expected a config file path, got {config!r}")
    path = (source.parent / config).resolve()
    if not path.is_file():
        raise FerlabError(f"{where}.config: no such config file: {path}")
    for key in STAGE_INPUTS:
        value = entry.get(key)
        if value is not None and value not in earlier:
            raise FerlabError(f"{where}.{key}: {value!r} is not an earlier stage "
                              f"(earlier: {', '.join(earlier) or 'none'})")
    return Stage(name, path, entry.get("init"), entry.get("teacher"))


def load_recipe(path: str | Path) -> Recipe:
    """The recipe YAML at `path`: ``stages:``, a list of ``{name, config, init?, teacher?}``, configs relative to it.

    Raises:
        FerlabError: an unreadable file, or a stage that is malformed or names a missing config or stage.
    """
    source = Path(path).expanduser().resolve()
    raw = read_yaml(source, "recipe file")
    if not isinstance(raw, dict) or set(raw) != {"stages"} or not isinstance(raw["stages"], list) or not raw["stages"]:
        raise FerlabError(f"{source}: a recipe is one key, stages: a non-empty list of stages")
    stages: list[Stage] = []
    for index, entry in enumerate(raw["stages"]):
        stages.append(_stage(entry, index, [s.name for s in stages], source))
    return Recipe(source, tuple(stages))


def _stage_config(recipe: Recipe, stage: Stage, data: str, out: Path, overrides: Sequence[str]) -> TrainConfig:
    """The stage's config with the recipe's data, run folder and inputs; refused if it reaches outside the recipe."""
    values: dict[str, Any] = {"data.path": data, "out": str(out / stage.name)}
    values.update({field: str(out / getattr(stage, key)) for key, field in STAGE_INPUTS.items() if getattr(stage, key)})
    cfg = load_config(stage.config, overrides, values)
    for key, field in STAGE_INPUTS.items():
        stated = functools.reduce(getattr, field.split("."), cfg)
        if getattr(stage, key) is None and stated is not None:
            raise FerlabError(f"{recipe.source}: stage {stage.name!r}: {stage.config.name} sets {field}: {stated}, a "
                              f"model this recipe does not train, so the result would depend on whatever that model "
                              f"is today; name the stage that trains it ({key}: STAGE)")
    cfg.validate()
    return cfg


def _changed_settings(cfg: TrainConfig) -> list[str]:
    """The config keys in which the stage folder's run differs from `cfg` (none for a folder without a run)."""
    run = RunDir(cfg.out)
    return changed_fields(load_config(run.config), cfg) if run.config.is_file() else []


def _check_stage_folder(name: str, cfg: TrainConfig) -> None:
    """Refuse a stage folder trained under other settings before anything trains; it is left as it is."""
    run = RunDir(cfg.out)
    changed = _changed_settings(cfg)
    if changed:
        raise FerlabError(f"stage {name!r}: {run.path} was trained with other values of {', '.join(changed)}; "
                          "move it away to train the stage again, or choose another output folder")


def _finished(name: str, run_dir: Path) -> StageResult:
    summary = RunDir(run_dir).read_summary() or {}
    try:
        return StageResult(name, run_dir, "reused", float(summary["best_val_acc"]), int(summary["best_epoch"]),
                           int(summary["epochs_run"]), float(summary["seconds"]))
    except (KeyError, TypeError, ValueError) as err:
        raise FerlabError(f"stage {name!r}: {RunDir(run_dir).summary} is not a run summary ({err})") from None


def _run_stage(name: str, cfg: TrainConfig, callbacks: Sequence[Callback]) -> StageResult:
    """Reuse a finished stage, resume a started one, or train it from epoch 1."""
    run = RunDir(cfg.out)
    if run.is_finished():
        log.info("stage %s: reusing the finished run in %s", name, run.path)
        return _finished(name, run.path)
    started = run.config.is_file()
    log.info("stage %s: %s in %s", name, "resuming" if started else "training", run.path)
    result = resume(run.path, callbacks, wanted=cfg) if started else train(cfg, callbacks)
    return StageResult(name, result.run_dir, "resumed" if started else "trained", result.best_val_acc,
                       result.best_epoch, result.epochs_run, result.seconds)


def reproduce(
    recipe: str | Path | Recipe,
    *,
    data: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Callback] = (),
) -> ReproduceResult:
    """Train every stage of `recipe` on `data` into ``out/<stage>``, each from the earlier runs it names.

    Every stage's config is checked, and every existing stage folder compared with it, before the
    first epoch, so a bad recipe or a changed one fails in seconds rather than hours in.

    Args:
        overrides: ``key=value`` settings for every stage (e.g. ``data.cache_dir=...``, ``accelerator=gpu``);
            they become part of each stage's config, so a rerun must give the same ones.
        callbacks: extra Lightning callbacks for every stage.

    Raises:
        FerlabError: a bad recipe or stage config, or a stage folder trained with other settings.
        TrainingInterrupted: a signal stopped a stage; the same call carries on from its last checkpoint.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    configs = stage_configs(recipe, data, out, overrides)
    for stage, cfg in zip(recipe.stages, configs):
        _check_stage_folder(stage.name, cfg)
    return ReproduceResult(tuple(_run_stage(stage.name, cfg, callbacks) for stage, cfg in zip(recipe.stages, configs)))


@dataclass(frozen=True)
class StageState:
    """Where one stage stands: finished, stopped after some epochs (resumable), or not started."""

    name: str
    run_dir: Path
    state: Literal["finished", "stopped", "new"]
    epochs_done: int
    epochs: int
    best_val_acc: float | None
    changed: tuple[str, ...] = ()  # settings in which the folder's run differs from the recipe's stage


def _val_accuracies(run: RunDir) -> np.ndarray:
    """Validation accuracy by finished epoch; empty before the first one ends."""
    try:
        return read_metrics(run.path)["val_acc"]
    except FerlabError:  # no metrics.csv yet, or one without epoch rows
        return np.array([])


def recipe_status(recipe: str | Path | Recipe, *, data: str | Path, out: str | Path,
                  overrides: Sequence[str] = ()) -> list[StageState]:
    """Each stage's state, read from its folder without training: how far a chain longer than a session has got."""
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    states = []
    for stage, cfg in zip(recipe.stages, stage_configs(recipe, data, out, overrides)):
        run = RunDir(cfg.out)
        val_acc = _val_accuracies(run)
        state = "finished" if run.is_finished() else "stopped" if run.config.is_file() else "new"
        best = float(np.nanmax(val_acc)) if np.isfinite(val_acc).any() else None
        states.append(StageState(stage.name, run.path, state, len(val_acc), cfg.epochs, best,
                                 tuple(_changed_settings(cfg))))
    return states


def stage_configs(recipe: Recipe, data: str | Path, out: str | Path, overrides: Sequence[str] = ()) -> list[TrainConfig]:
    """Each stage's config, in order, as `reproduce` trains it: checked, with nothing read from the stage folders."""
    fixed = [o for o in overrides if o.split("=", 1)[0].strip() in SET_BY_RECIPE]
    if fixed:
        raise FerlabError(f"{recipe.source}: the recipe sets {', '.join(sorted(SET_BY_RECIPE))} itself; "
                          f"drop the override(s) {', '.join(fixed)}")
    out = Path(out).expanduser().resolve()
    return [_stage_config(recipe, stage, str(data), out, overrides) for stage in recipe.stages]
