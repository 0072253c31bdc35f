"""`tune(space, ...)`: hyperparameter search over `train` with Optuna.

Each trial samples the space, trains into ``<out>/trials/<number>`` and reports
validation accuracy after every epoch, so that the median pruner can stop a poor
trial early. The study lives in a database (SQLite in ``<out>/study.db`` unless
told otherwise): calling `tune` again resumes it, and processes on several
machines sharing a server database (PostgreSQL, MySQL) work on one study.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import optuna
import sqlalchemy
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from ferlab._io import atomic_path, write_csv, write_text
from ferlab.errors import FerlabError
from ferlab.experiments.grid import grid_points
from ferlab.experiments.search_space import SearchSpace, load_space
from ferlab.rundir import RunDir
from ferlab.training.config import load_config
from ferlab.training.train import train

__all__ = ["SAMPLERS", "TrialRecord", "TuneResult", "tune"]

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "grid", "random")
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_HEARTBEAT_S = 60  # a trial whose process died is marked failed after two missed beats
_OPEN_TRIES = 3


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as ``trials.csv`` lists it (`value` of a pruned trial: its last reported epoch)."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    duration: float | None  # seconds
    worker: str  # host:pid that ran it
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "state": self.state, "value": self.value, "params": dict(self.params),
                "duration": self.duration, "worker": self.worker, "error": self.error}


@dataclass(frozen=True)
class TuneResult:
    """The best trial and every trial of the study, all workers' (`storage` without its password)."""

    best_value: float
    best_params: dict[str, Any]
    best_config_path: Path
    trials: tuple[TrialRecord, ...] = field(repr=False)
    study_name: str
    storage: str


class _PruningCallback(L.Callback):
    """Reports each epoch's metric to the trial and stops the trial when the pruner says so.

    Not optuna-integration's PyTorchLightningPruningCallback: that one reports in
    ``on_validation_end``, before ``metrics.csv`` gets the epoch's row, so a pruned
    run's folder would lack its last epoch; it also reaches into private Lightning
    and Optuna attributes. Reporting after the row is written keeps the folder whole.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch + 1  # steps are the epochs of metrics.csv
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")


def _masked(url: str) -> str:
    """`url` without its password, for logs and messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _make_sampler(space: SearchSpace, kind: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if kind == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _make_pruner(space: SearchSpace, prune: bool) -> optuna.pruners.BasePruner:
    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=space.n_startup_trials, n_warmup_steps=space.n_warmup_steps)


def _open_study(url: str, name: str, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """Create or load the study named `name` in the database at `url`.

    Retried: workers started together on a fresh server database race to create
    its tables, and the loser sees an integrity or programming error once.
    """
    for attempt in range(_OPEN_TRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                storage = optuna.storages.RDBStorage(url, heartbeat_interval=_HEARTBEAT_S)
            study = optuna.create_study(storage=storage, study_name=name, pruner=pruner, direction="maximize",
                                        load_if_exists=True)
            break
        except ImportError as err:
            hint = "; pip install 'psycopg[binary]'" if url.startswith("postgresql") else ""
            raise FerlabError(f"cannot open study database {_masked(url)}: its driver is not installed "
                              f"({err.__cause__ or err}){hint}") from None
        except (ValueError, RuntimeError, sqlalchemy.exc.ArgumentError) as err:
            # A malformed URL, or tables of another Optuna version.
            raise FerlabError(f"cannot open study database {_masked(url)}: {err}") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == _OPEN_TRIES - 1:
                raise FerlabError(f"cannot open study database {_masked(url)}: {str(err).splitlines()[0]}") from None
            time.sleep(1.0 + attempt)
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        raise FerlabError(f"study {name} in {_masked(url)} does not maximise one value; choose another study name")
    return study


def _check_trial_folders(out: Path, study: optuna.Study) -> None:
    """Refuse an `out` whose trial folders another study wrote (their numbers would collide)."""
    folders = sorted(p.name for p in (out / "trials").glob("*"))  # before the trials: a folder follows its trial
    known = {str(t.number) for t in study.get_trials(deepcopy=False)}
    stray = [name for name in folders if name not in known]
    if stray:
        raise FerlabError(f"{out / 'trials'} holds runs {stray[:5]} that study {study.study_name} does not know; "
                          "choose a new out folder, or the storage and study name that made them")


def _check_overrides(space: SearchSpace, overrides: Sequence[str], fixed: Mapping[str, Any]) -> None:
    """Refuse overrides of searched or per-trial keys: load_config applies overrides last, so they would win."""
    taken = set(space.keys) | set(fixed) | {"out"}
    clashes = [o for o in overrides if o.partition("=")[0].strip() in taken]
    if clashes:
        raise FerlabError(f"overrides {clashes} set keys that tune chooses for each trial "
                          "(the search space, out, data.path or epochs)")


def _objective(trial: optuna.Trial, space: SearchSpace, out: Path, fixed: Mapping[str, Any],
               overrides: Sequence[str], prune: bool) -> float:
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    run_dir = out / "trials" / str(trial.number)
    values = {**{p.key: p.suggest(trial) for p in space.params}, **fixed, "out": str(run_dir)}
    callbacks = [_PruningCallback(trial, space.metric)] if prune else []
    try:
        result = train(load_config(space.base, overrides, values), callbacks=callbacks)
    except FerlabError as err:
        trial.set_user_attr("error", str(err))  # Optuna records the trial as failed and goes on
        raise
    # Kept in the study too, so that any worker can write best.yaml without this machine's run folder.
    trial.set_user_attr("config", RunDir(run_dir).config.read_text(encoding="utf-8"))
    trial.set_user_attr("best_epoch", result.best_epoch)
    return result.best_val_acc


def _record(trial: FrozenTrial) -> TrialRecord:
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value,
        params=dict(trial.params),
        duration=round(trial.duration.total_seconds(), 3) if trial.duration is not None else None,
        worker=str(trial.user_attrs.get("worker", "")),
        error=str(trial.user_attrs.get("error", "")),
    )


def _write_plots(study: optuna.Study, out: Path, n_complete: int, n_params: int) -> None:
    """Optuna's standard plots as PNG; one Optuna cannot draw is skipped with a log line."""
    import matplotlib.pyplot as plt  # Optuna draws with pyplot; imported only when plotting
    from optuna.visualization import matplotlib as vis

    plots = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
        "slice": vis.plot_slice,
    }
    for name, plot in plots.items():
        if name == "param_importances" and (n_complete < 2 or n_params < 2):
            log.info("skipping %s.png: it needs two complete trials and two params", name)
            continue
        try:
            with warnings.catch_warnings():
                # Optuna marks these experimental, and matplotlib warns of flat axes when a param never varied.
                warnings.simplefilter("ignore")
                axes = plot(study)
            fig = np.ravel(axes)[0].figure  # plot_slice gives one Axes per param
            try:
                with atomic_path(out / f"{name}.png") as tmp:
                    # A tight box: Optuna's layout cuts off long dotted param names.
                    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
            finally:
                plt.close(fig)
        except Exception as err:  # a plot is never worth failing a finished search for
            log.warning("skipping %s.png: Optuna could not draw it: %s", name, err)


def _best_config(trial: FrozenTrial, out: Path) -> str:
    """The best trial's resolved config: from its run folder here, else as its worker stored it."""
    path = RunDir(out / "trials" / str(trial.number)).config
    return path.read_text(encoding="utf-8") if path.is_file() else str(trial.user_attrs["config"])


def _write_results(study: optuna.Study, space: SearchSpace, out: Path, url: str) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    records = tuple(_record(t) for t in trials)
    keys = list(dict.fromkeys([*space.keys, *(k for r in records for k in r.params)]))
    rows = [{**{k: v for k, v in r.to_dict().items() if k != "params"}, **r.params} for r in records]
    write_csv(out / "trials.csv", rows, ["number", "state", "value", *keys, "duration", "worker", "error"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise FerlabError(f"no trial of study {study.study_name} completed; see {out / 'trials.csv'}")
    best = study.best_trial
    best_path = out / "best.yaml"
    write_text(best_path, _best_config(best, out))
    _write_plots(study, out, len(complete), len(keys))
    log.info("best %s %.4f in trial %d of %d; its config is %s", space.metric, best.value, best.number,
             len(trials), best_path)
    return TuneResult(
        best_value=float(best.value),
        best_params=dict(best.params),
        best_config_path=best_path,
        trials=records,
        study_name=study.study_name,
        storage=_masked(url),
    )


def _checked_trials(space: SearchSpace, sampler: str, trials: int, fixed: dict[str, Any],
                    overrides: Sequence[str]) -> int:
    """The trials to hold (a grid's size at most), once the options, data, base config and overrides are checked.

    Raises:
        FerlabError: an unknown sampler, fewer than one trial, a missing dataset, a bad base config or override.
    """
    if sampler not in SAMPLERS:
        raise FerlabError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if trials < 1:
        raise FerlabError(f"trials must be at least 1, got {trials}")
    if not Path(fixed["data.path"]).expanduser().exists():
        raise FerlabError(f"no such dataset: {fixed['data.path']}")  # else every trial would fail on it
    _check_overrides(space, overrides, fixed)
    load_config(space.base, overrides, fixed)  # a bad base config or override fails here, not in every trial
    if sampler == "grid":
        size = len(grid_points(space.grid()))
        if trials > size:
            log.info("the grid has %d combinations; running those rather than %d trials", size, trials)
            return size
    return trials


def _run_missing_trials(study: optuna.Study, trials: int, objective: Callable[[optuna.Trial], float], *,
                        space: SearchSpace, sampler: str, seed: int | None, timeout: float | None, url: str) -> None:
    """Run trials until `study` holds `trials` finished ones (other workers' running trials counted).

    The sampler's seed is offset by the trials already in the study, so that a resumed search draws new values.
    """
    finished = len(study.get_trials(deepcopy=False, states=_FINISHED))
    if finished >= trials:
        log.info("study %s already holds %d finished trials; none to run", study.study_name, finished)
        return
    offset = len(study.get_trials(deepcopy=False))
    study.sampler = _make_sampler(space, sampler, None if seed is None else seed + offset)
    log.info("study %s in %s: %d finished trials, running up to %d more", study.study_name, _masked(url),
             finished, trials - finished)
    study.optimize(
        objective,
        n_trials=trials - finished,
        timeout=timeout,
        catch=(FerlabError,),
        # Counting other workers' running trials stops this one once the study will have enough.
        callbacks=[MaxTrialsCallback(trials, states=(*_FINISHED, TrialState.RUNNING))],
        gc_after_trial=True,
    )


def tune(
    space: SearchSpace | str | Path,
    *,
    data: str | Path,
    out: str | Path,
    trials: int,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = 0,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
    timeout: float | None = None,
    prune: bool = True,
) -> TuneResult:
    """Search `space` for the training config with the best validation accuracy on `data`.

    Writes into `out`: ``trials/<number>/`` (each trial's run folder),
    ``study.db`` (unless `storage` is given), ``trials.csv``, ``best.yaml`` (the
    best trial's resolved config, ready for ``ferlab train --config``) and
    Optuna's plots as PNG.

    Args:
        space: a `SearchSpace` or its YAML file.
        trials: finished trials (complete, pruned or failed) the study should hold;
            a study that has some already only runs the rest, a grid at most its size.
            Workers sharing a study stop when finished plus running trials reach it.
        sampler: tpe, grid (every combination of the params' grids) or random.
        storage: a database URL (``postgresql://user@host/db``) shared by workers;
            default ``sqlite:///<out>/study.db``.
        study_name: default: the space file's name.
        seed: seeds the sampler, offset by the trials already in the study so that a
            resumed search draws new values; workers starting together need different
            seeds (or None).
        epochs, overrides: training epochs and ``key=value`` overrides for every trial.
        timeout: seconds after which no new trial starts.
        prune: stop trials below the median of earlier ones at the same epoch.

    Raises:
        FerlabError: bad space, data path, overrides, base config or storage; no completed trial.
    """
    space = space if isinstance(space, SearchSpace) else load_space(space)
    fixed = {"data.path": str(data), **({"epochs": epochs} if epochs is not None else {})}
    trials = _checked_trials(space, sampler, trials, fixed, overrides)
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study = _open_study(url, study_name or space.name, _make_pruner(space, prune))
    _check_trial_folders(out, study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of a killed process, so that they count as finished
    _run_missing_trials(study, trials, lambda trial: _objective(trial, space, out, fixed, overrides, prune),
                        space=space, sampler=sampler, seed=seed, timeout=timeout, url=url)
    return _write_results(study, space, out, url)
