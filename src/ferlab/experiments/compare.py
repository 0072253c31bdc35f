"""`compare(grid, data=..., out=...)`: train every combination of a grid of config values, over seeds, and tabulate.

A comparison answers "which of these settings is better, and by more than the
seed-to-seed noise?": each combination is trained once per seed with everything
else equal, and the results come back as a table (mean ± std over seeds) and
overlaid training curves. Runs execute one after another (CPU-bound on small
machines) and finished runs are reused, so an interrupted comparison carries on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ferlab._io import write_csv, write_text
from ferlab._markdown import markdown_table
from ferlab.data import open_dataset
from ferlab.errors import FerlabError
from ferlab.evaluation import choose_split, evaluate
from ferlab.evaluation.curves import plot_curves
from ferlab.experiments.grid import grid_points
from ferlab.models import count_parameters, load_model, model_entry
from ferlab.rundir import RunDir, read_yaml
from ferlab.training.config import TrainConfig, changed_fields, load_config
from ferlab.training.train import train

__all__ = [
    "Combination",
    "CompareGrid",
    "CompareResult",
    "GridAxis",
    "GridOption",
    "RunRow",
    "SummaryRow",
    "compare",
    "load_grid",
]

log = logging.getLogger(__name__)

GRID_FIELDS = ("base", "grid", "seeds", "overrides", "evaluate")
#: Config keys compare sets itself, per run; a grid or override may not set them.
SET_BY_COMPARE = {"data.path": "data", "out": "out", "seed": "seeds"}
EVAL_SPLITS = ("auto", "all", "train", "val", "test")
_ABSENT = object()


@dataclass(frozen=True)
class GridOption:
    """One value of a grid axis: a label and the dotted config keys it sets."""

    label: str
    values: dict[str, Any]


@dataclass(frozen=True)
class GridAxis:
    """A grid entry: a config key and its values, or a name whose values each set several keys."""

    name: str
    options: tuple[GridOption, ...]


@dataclass(frozen=True)
class Combination:
    """One point of the grid.

    Attributes:
        label: the option labels, e.g. ``deep_cnn, sgd 0.01`` (tables, legends).
        slug: the same as a unique, filesystem-safe name, e.g. ``deep_cnn-sgd_0.01``.
        choices: axis name -> option label.
        values: dotted config key -> value, for `load_config`.
    """

    label: str
    slug: str
    choices: dict[str, str]
    values: dict[str, Any]


@dataclass(frozen=True)
class CompareGrid:
    """A parsed grid file; see `load_grid`."""

    axes: tuple[GridAxis, ...]
    base: Path | None = None
    seeds: tuple[int, ...] = (0,)
    overrides: tuple[str, ...] = ()
    evaluate: str | None = None
    source: str = "grid"

    @property
    def keys(self) -> list[str]:
        """Every dotted config key the grid sets, in axis order."""
        return list(dict.fromkeys(k for axis in self.axes for option in axis.options for k in option.values))

    def combinations(self) -> list[Combination]:
        """Every combination of one option per axis, the first axis varying slowest."""
        combos: list[Combination] = []
        taken: set[str] = set()
        for point in grid_points({axis.name: axis.options for axis in self.axes}):
            options = list(point.values())
            label = ", ".join(o.label for o in options)
            slug = "-".join(_safe(o.label) for o in options)
            if len(slug) > 64:
                slug = f"{slug[:55]}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
            unique, n = slug, 1
            while unique.lower() in taken:  # case-insensitive filesystems would merge Adam and adam
                n += 1
                unique = f"{slug}-{n}"
            taken.add(unique.lower())
            combos.append(Combination(
                label=label,
                slug=unique,
                choices={axis.name: o.label for axis, o in zip(self.axes, options)},
                values={k: v for o in options for k, v in o.values.items()},
            ))
        return combos


@dataclass(frozen=True)
class RunRow:
    """One trained (or reused, or failed) run; `status` is ``ok`` or ``failed`` with `error`."""

    run: str
    combination: Combination
    seed: int
    status: str
    reused: bool = False
    best_val_acc: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    seconds: float | None = None
    parameters: int | None = None
    eval_split: str | None = None
    eval_accuracy: float | None = None
    eval_macro_f1: float | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("run", "combination")}
        return {"run": self.run, "label": self.combination.label, **self.combination.values, **fields}


@dataclass(frozen=True)
class SummaryRow:
    """One combination over its seeds: mean and sample std (None below two runs) of each metric."""

    combination: Combination
    seeds: int
    failed: int
    val_acc_mean: float | None
    val_acc_std: float | None
    eval_accuracy_mean: float | None
    eval_accuracy_std: float | None
    eval_macro_f1_mean: float | None
    eval_macro_f1_std: float | None
    epochs_mean: float | None
    seconds_mean: float | None
    parameters: int | None

    def to_dict(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "combination"}
        return {"label": self.combination.label, **self.combination.values, **fields}


@dataclass(frozen=True)
class CompareResult:
    """Every run, the per-combination summary (best first), that summary as markdown, and the output folder."""

    rows: tuple[RunRow, ...]
    summary: tuple[SummaryRow, ...]
    table_markdown: str
    out: Path


@dataclass(frozen=True)
class _Run:
    combination: Combination
    seed: int
    cfg: TrainConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)


def _text(value: Any) -> str:
    """A value as a short label, YAML-like (``true``, ``null``, ``[a,b]``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", label).strip("._-") or "x"


def _check_overrides(overrides: Sequence[str], base: Path | None, grid_keys: Sequence[str], where: str) -> tuple[str, ...]:
    """Overrides apply to every run, so one that sets a grid key (or a key compare sets) is a contradiction."""
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise FerlabError(f"{where}: overrides must be a list of key=value strings, got {overrides!r}")
    for override in overrides:
        key = override.split("=", 1)[0].strip()
        if key in SET_BY_COMPARE:
            raise FerlabError(f"{where}: override {override!r}: {key} is set by compare (from {SET_BY_COMPARE[key]})")
        if key in grid_keys:
            raise FerlabError(f"{where}: override {override!r} sets {key}, which the grid varies")
    try:
        load_config(base, overrides)
    except FerlabError as err:
        raise FerlabError(f"{where}: overrides: {err}") from None
    return tuple(overrides)


def _parse_axes(grid: Any, base: Path | None, where: str) -> tuple[GridAxis, ...]:
    if not isinstance(grid, Mapping) or not grid:
        raise FerlabError(f"{where}: 'grid' must map config keys to lists of values")
    try:
        defaults = OmegaConf.structured(load_config(base))
    except FerlabError as err:
        raise FerlabError(f"{where}: base: {err}") from None
    axes: list[GridAxis] = []
    seen: dict[str, str] = {}
    for name, options in grid.items():
        name = str(name)
        if not isinstance(options, list) or not options:
            raise FerlabError(f"{where}: grid key {name!r} needs a non-empty list of values, got {options!r}")
        # A list of mappings under a name that is no config field: each mapping sets several keys.
        several = all(isinstance(o, Mapping) for o in options) and OmegaConf.select(defaults, name, default=_ABSENT) is _ABSENT
        parsed: list[GridOption] = []
        for option in options:
            if several and not option:
                raise FerlabError(f"{where}: grid key {name!r} has an empty mapping")
            values = {str(k): v for k, v in option.items()} if several else {name: option}
            label = " ".join(_text(v) for v in values.values())
            for key in values:
                if key in SET_BY_COMPARE:
                    raise FerlabError(f"{where}: grid key {key!r} is set by compare (from {SET_BY_COMPARE[key]})")
                if seen.setdefault(key, name) != name:
                    raise FerlabError(f"{where}: config key {key!r} appears in grid keys {seen[key]!r} and {name!r}")
            try:
                load_config(base, values=values)
            except FerlabError as err:
                raise FerlabError(f"{where}: grid key {name!r}: {err}") from None
            if any(values == p.values for p in parsed):
                raise FerlabError(f"{where}: grid key {name!r} repeats the value {label!r}")
            parsed.append(GridOption(label, values))
        axes.append(GridAxis(name, tuple(parsed)))
    return tuple(axes)


def load_grid(source: str | Path | Mapping[str, Any]) -> CompareGrid:
    """Read and check a grid: a YAML file, or a mapping of the same shape.

    Shape: ``grid`` (config key, or a name whose values are mappings of several
    keys -> list of values), and optional ``base`` (a training config; relative to
    the grid file, or to the working folder for a mapping), ``seeds`` (default
    ``[0]``), ``overrides`` (``key=value`` for every run) and ``evaluate`` (a split
    to evaluate every model on: auto, all, train, val or test).

    Raises:
        FerlabError: naming the file and the key: unknown fields or config keys,
            empty lists, values of the wrong type, contradicting overrides.
    """
    if isinstance(source, Mapping):
        raw: Any = dict(source)
        where, folder = "grid", None
    else:
        path = Path(source).expanduser()
        raw = read_yaml(path, "grid file")
        where, folder = str(path), path.parent
    if not isinstance(raw, dict):
        raise FerlabError(f"{where}: expected a mapping with the fields {', '.join(GRID_FIELDS)}")
    unknown = sorted(str(k) for k in set(raw) - set(GRID_FIELDS))
    if unknown:
        raise FerlabError(f"{where}: unknown field(s) {unknown}; a grid file has {', '.join(GRID_FIELDS)}")
    base = None
    if raw.get("base") is not None:
        base = Path(str(raw["base"])).expanduser()
        base = (folder / base).resolve() if folder is not None else base
        if not base.is_file():
            raise FerlabError(f"{where}: base: no such config file: {base}")
    axes = _parse_axes(raw.get("grid"), base, where)
    grid_keys = list(dict.fromkeys(k for axis in axes for option in axis.options for k in option.values))
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise FerlabError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise FerlabError(f"{where}: seeds repeat: {seeds}")
    overrides = _check_overrides(raw.get("overrides") or [], base, grid_keys, where)
    split = raw.get("evaluate")
    if split is not None and split not in EVAL_SPLITS:
        raise FerlabError(f"{where}: evaluate must be one of {EVAL_SPLITS}, got {split!r}")
    return CompareGrid(axes, base, tuple(seeds), overrides, split, where)


def _plan(spec: CompareGrid, data: str, out: Path, overrides: Sequence[str]) -> list[_Run]:
    """Every run's full config, checked before anything trains."""
    runs = []
    for combo in spec.combinations():
        for seed in spec.seeds:
            run_dir = out / "runs" / f"{combo.slug}-s{seed}"
            try:
                cfg = load_config(spec.base, overrides, {**combo.values, "data.path": data, "out": str(run_dir), "seed": seed})
                cfg.validate()
                model_entry(cfg.model.name)
            except FerlabError as err:
                raise FerlabError(f"{spec.source}: {combo.label}: {err}") from None
            runs.append(_Run(combo, seed, cfg))
    return runs


def _check_run_dirs(runs: Sequence[_Run], resume: bool) -> None:
    """Refuse, before anything trains, run folders that cannot be reused; they are never deleted here."""
    for run in runs:
        run_dir = run.run_dir
        if not run_dir.exists():
            continue
        if not RunDir(run_dir).is_finished():
            raise FerlabError(f"run folder {run_dir} exists without summary.json (an interrupted or failed run); "
                              "delete or move it, then run the comparison again")
        if not resume:
            raise FerlabError(f"run folder {run_dir} holds a finished run and resume is off; "
                              "delete or move it, or choose another output folder")
        changed = changed_fields(load_config(RunDir(run_dir).config), run.cfg)
        if changed:
            raise FerlabError(f"run folder {run_dir} was trained with other values of {', '.join(changed)}; "
                              "delete or move it, or choose another output folder")


def _check_eval_split(data: str, split: str) -> None:
    """Fail before training when the split to evaluate on is absent or would hold training images."""
    try:
        table = choose_split(open_dataset(data), split)
    except FerlabError as err:
        raise FerlabError(f"evaluate: {split}: {err}") from None
    if split == "auto" and table.splits() == [""]:
        raise FerlabError(f"evaluate: auto: {data} has no splits of its own, so it would be evaluated whole, "
                          "training images included; split it first (ferlab data split) or leave evaluate out")


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        return {k: summary[k] for k in ("best_val_acc", "best_epoch", "epochs_run", "seconds")}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise FerlabError(f"{path}: not a run summary ({err})") from None


def _evaluation(run: _Run, split: str) -> dict[str, Any]:
    """The run's metrics on `split`, reused from an earlier comparison when it evaluated the same data."""
    eval_dir = run.run_dir / f"eval-{split}"
    previous = eval_dir / "metrics.json"
    if previous.is_file():
        try:
            metrics = json.loads(previous.read_text(encoding="utf-8"))
            if metrics.get("data") == run.cfg.data.path:
                return metrics
        except json.JSONDecodeError:
            pass  # written atomically, so only a hand-edited file gets here; evaluate again
    return evaluate(run.run_dir, run.cfg.data.path, eval_dir, split=split).to_dict()


def _run_one(run: _Run, split: str | None) -> RunRow:
    """Train (or reuse) one run; a FerlabError makes it a failed row instead of stopping the grid."""
    name = run.run_dir.name
    reused = RunDir(run.run_dir).is_finished()
    try:
        if reused:
            log.info("%s: reusing the finished run", name)
            result = _read_summary(RunDir(run.run_dir).summary)
        else:
            log.info("%s: training %s, seed %d", name, run.combination.label, run.seed)
            result = {k: v for k, v in dataclasses.asdict(train(run.cfg)).items() if k != "run_dir"}
    except FerlabError as err:
        log.warning("%s failed: %s", name, err)
        return RunRow(name, run.combination, run.seed, "failed", reused, error=str(err))
    row = RunRow(name, run.combination, run.seed, "ok", reused, **result)
    try:
        row = dataclasses.replace(row, parameters=count_parameters(load_model(run.run_dir).module))
        if split is not None:
            metrics = _evaluation(run, split)
            row = dataclasses.replace(row, eval_split=metrics["split"], eval_accuracy=round(metrics["accuracy"], 6),
                                      eval_macro_f1=round(metrics["macro_f1"], 6))
    except FerlabError as err:
        log.warning("%s: evaluation failed: %s", name, err)
        return dataclasses.replace(row, status="failed", error=f"evaluation: {err}")
    return row


def _mean_std(values: Sequence[float | int | None]) -> tuple[float | None, float | None]:
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    std = round(statistics.stdev(present), 6) if len(present) > 1 else None
    return round(statistics.fmean(present), 6), std


def _summarise(rows: Sequence[RunRow], combos: Sequence[Combination]) -> list[SummaryRow]:
    """One row per combination, best mean validation accuracy first (the selection metric, not the test one)."""
    summary = []
    for combo in combos:
        mine = [r for r in rows if r.combination.slug == combo.slug]
        trained = [r for r in mine if r.best_val_acc is not None]
        summary.append(SummaryRow(
            combo,
            len(trained),
            sum(r.status == "failed" for r in mine),
            *_mean_std([r.best_val_acc for r in trained]),
            *_mean_std([r.eval_accuracy for r in trained]),
            *_mean_std([r.eval_macro_f1 for r in trained]),
            _mean_std([r.epochs_run for r in trained])[0],
            _mean_std([r.seconds for r in trained])[0],
            next((r.parameters for r in trained if r.parameters is not None), None),
        ))
    return sorted(summary, key=lambda s: (s.val_acc_mean is None, -(s.val_acc_mean or 0.0)))


def _cell(value: Any) -> Any:
    return "" if value is None else _text(value) if isinstance(value, (bool, list, tuple, Mapping)) else value


def _percent(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.1f} ± {100 * std:.1f}%" if std is not None else f"{100 * mean:.1f}%"


def _score(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _markdown(summary: Sequence[SummaryRow], axes: Sequence[GridAxis], eval_split: str | None) -> str:
    """A GitHub-flavoured table, best first, ready to paste into a README."""
    header = [axis.name for axis in axes] + ["best val acc"]
    if eval_split:
        header += [f"{eval_split} accuracy", f"{eval_split} macro-F1"]
    header += ["epochs", "time/run", "params", "seeds"]
    rows = []
    for s in summary:
        cells = [s.combination.choices[axis.name] for axis in axes] + [_percent(s.val_acc_mean, s.val_acc_std)]
        if eval_split:
            cells += [_percent(s.eval_accuracy_mean, s.eval_accuracy_std), _score(s.eval_macro_f1_mean, s.eval_macro_f1_std)]
        cells += [
            "-" if s.epochs_mean is None else f"{s.epochs_mean:g}",
            _duration(s.seconds_mean),
            _count(s.parameters),
            f"{s.seeds}" + (f" ({s.failed} failed)" if s.failed else ""),
        ]
        rows.append(cells)
    return "\n".join(markdown_table(header, rows, align="l" * len(header))) + "\n"


def compare(
    grid: str | Path | Mapping[str, Any] | CompareGrid,
    *,
    data: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    resume: bool = True,
) -> CompareResult:
    """Train every grid combination once per seed on `data`, then tabulate and plot them in `out`.

    Runs go to ``out/runs/<slug>-s<seed>``, one after another. `out` gets
    ``results.csv`` (one row per run, rewritten after each), ``summary.csv`` and
    ``summary.md`` (one row per combination, mean ± std over seeds, best first)
    and ``curves.png`` (accuracy and loss per epoch, one colour per combination).

    Args:
        grid: a grid file, a mapping of the same shape, or a parsed `CompareGrid` (see `load_grid`).
        overrides: ``key=value`` for every run, after the grid's own overrides.
        resume: reuse runs whose folder holds ``summary.json`` (trained with the same config).

    Raises:
        FerlabError: a bad grid or override, an evaluation split the data lacks, or a
            run folder that cannot be reused (interrupted, or trained differently);
            all checked before any training. A run that fails with a FerlabError is
            recorded as failed and the grid goes on.
    """
    spec = grid if isinstance(grid, CompareGrid) else load_grid(grid)
    overrides = [*spec.overrides, *_check_overrides(overrides, spec.base, spec.keys, "overrides")]
    if not Path(data).expanduser().exists():
        raise FerlabError(f"no such data: {data}")
    out = Path(out).expanduser()
    runs = _plan(spec, str(data), out, overrides)
    _check_run_dirs(runs, resume)
    if spec.evaluate is not None:
        _check_eval_split(str(data), spec.evaluate)

    rows = _run_all(runs, spec, out)
    combos = spec.combinations()
    summary = _summarise(rows, combos)
    table = _write_summary(summary, rows, spec, out)
    trained = {row.run for row in rows if row.best_val_acc is not None}
    finished = {c.label: [r.run_dir for r in runs if r.combination.slug == c.slug and r.run_dir.name in trained]
                for c in combos}
    if any(finished.values()):
        plot_curves(finished, out / "curves.png")
    else:
        log.warning("no run finished; %s has no curves.png", out)
    failed = sum(r.status == "failed" for r in rows)
    log.info("compared %d combinations in %d runs (%d failed); table in %s", len(combos), len(rows), failed, out / "summary.md")
    return CompareResult(tuple(rows), tuple(summary), table, out)


def _run_all(runs: Sequence[_Run], spec: CompareGrid, out: Path) -> list[RunRow]:
    """Train (or reuse) every planned run in turn; ``results.csv`` is rewritten after each."""
    columns = ["run", "label", *spec.keys, "seed", "status", "reused", "best_val_acc", "best_epoch", "epochs_run",
               "seconds", "parameters", *(["eval_split", "eval_accuracy", "eval_macro_f1"] if spec.evaluate else []), "error"]
    rows: list[RunRow] = []
    for i, run in enumerate(runs, 1):
        log.info("compare: run %d of %d", i, len(runs))
        rows.append(_run_one(run, spec.evaluate))
        # Rewritten after every run, so an interrupted comparison still shows what finished.
        write_csv(out / "results.csv", [{c: _cell(r.to_dict().get(c)) for c in columns} for r in rows], columns)
    return rows


def _write_summary(summary: Sequence[SummaryRow], rows: Sequence[RunRow], spec: CompareGrid, out: Path) -> str:
    """Write ``summary.csv`` and ``summary.md``; the markdown table."""
    eval_columns = ["eval_accuracy_mean", "eval_accuracy_std", "eval_macro_f1_mean", "eval_macro_f1_std"]
    summary_columns = ["label", *spec.keys, "seeds", "failed", "val_acc_mean", "val_acc_std",
                       *(eval_columns if spec.evaluate else []), "epochs_mean", "seconds_mean", "parameters"]
    write_csv(out / "summary.csv", [{c: _cell(s.to_dict().get(c)) for c in summary_columns} for s in summary], summary_columns)
    # Headed by the split actually evaluated (auto becomes test or val), e.g. "test accuracy".
    eval_split = "+".join(sorted({r.eval_split for r in rows if r.eval_split})) or spec.evaluate
    table = _markdown(summary, spec.axes, "eval" if eval_split == "auto" else eval_split)
    write_text(out / "summary.md", table)
    return table
