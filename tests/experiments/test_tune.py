"""`tune`: a real Optuna search on the synthetic tree, resumed, on a grid, with failures and pruning."""

import csv
import importlib
import shutil
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from ferlab.errors import FerlabError
from ferlab.experiments.search_space import Param, SearchSpace, load_space
from ferlab.experiments.tune import tune
from ferlab.training import load_config

tune_module = importlib.import_module("ferlab.experiments.tune")

REPO = Path(__file__).resolve().parents[2]
FAST = ["data.batch_size=32", "data.augment.preset=none", "data.image_size=24"]  # small and quick
# The module study's space, as written in its YAML file below.
SPACE = SearchSpace(
    (Param("optim.lr", "float", 1e-5, 1e-1, log=True), Param("model.kwargs.dense", "categorical", choices=(64, 128))),
    base=REPO / "configs" / "cnn3_bn.yaml",
)


def _write_space(folder: Path, text: str) -> Path:
    path = folder / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def study(tree, tmp_path_factory):
    """Four TPE trials of one epoch over learning rates from hopeless (1e-5) to divergent (1e-1)."""
    folder = tmp_path_factory.mktemp("tune")
    space = _write_space(folder, f"""
        base: {REPO / "configs" / "cnn3_bn.yaml"}
        space:
          optim.lr: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
          model.kwargs.dense: {{type: categorical, choices: [64, 128]}}
    """)
    out = folder / "out"
    # Seed 6 draws lr 3.7e-2, 1.5e-5 (hopeless), 1.3e-3 and 3e-3.
    return tune(space, data=tree, out=out, trials=4, epochs=1, overrides=FAST, seed=6), out


@pytest.mark.slow  # the module's Optuna study: some 10 s
def test_study_writes_best_config_trials_and_plots(study):
    result, out = study
    assert {"study.db", "best.yaml", "trials.csv", "optimization_history.png", "param_importances.png",
            "parallel_coordinate.png", "slice.png"} <= {p.name for p in out.iterdir()}
    assert all((out / f"{name}.png").read_bytes()[:4] == b"\x89PNG" for name in ("slice", "optimization_history"))
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1", "2", "3"]
    rows = _csv_rows(out / "trials.csv")
    assert list(rows[0]) == ["number", "state", "value", *SPACE.keys, "duration", "worker", "error"]
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3] and {r["state"] for r in rows} == {"COMPLETE"}
    best = load_config(result.best_config_path)  # the best trial's resolved config, ready to retrain
    assert best.optim.lr == pytest.approx(result.best_params["optim.lr"])
    assert best.model.kwargs["dense"] == result.best_params["model.kwargs.dense"]
    assert best.epochs == 1 and best.data.image_size == 24
    assert result.study_name == "space" and result.storage == f"sqlite:///{out.resolve() / 'study.db'}"


@pytest.mark.slow  # the module's Optuna study: some 10 s
def test_best_trial_is_the_best_and_beats_the_worst(study):
    result, out = study
    complete = [t for t in result.trials if t.state == "COMPLETE"]
    assert result.best_value == max(t.value for t in complete)
    worst = min(complete, key=lambda t: t.value)
    assert worst.value < result.best_value and worst.params["optim.lr"] < 1e-4  # a hopeless learning rate loses
    best = next(t for t in complete if t.params == result.best_params)
    assert yaml.safe_load((out / "trials" / str(best.number) / "config.yaml").read_text()) == \
        yaml.safe_load(result.best_config_path.read_text())


@pytest.mark.slow  # the module's Optuna study: some 10 s
def test_rerun_resumes_the_study_and_runs_only_missing_trials(study, tree, tmp_path):
    first, out = study
    # Only the database travels: as on another machine, best.yaml then comes from the study itself.
    shutil.copy(out / "study.db", tmp_path / "study.db")
    resumed = tune(SPACE, data=tree, out=tmp_path, trials=5, epochs=1, overrides=FAST, seed=6, study_name="space")
    assert resumed.trials[:4] == first.trials
    assert [t.number for t in resumed.trials] == [0, 1, 2, 3, 4] and resumed.trials[4].state == "COMPLETE"
    assert resumed.trials[4].params not in [t.params for t in first.trials]  # the sampler did not start over
    assert [p.name for p in (tmp_path / "trials").iterdir()] == ["4"]
    assert load_config(resumed.best_config_path).optim.lr == pytest.approx(resumed.best_params["optim.lr"])
    again = tune(SPACE, data=tree, out=tmp_path, trials=5, epochs=1, overrides=FAST, seed=6, study_name="space")
    assert again.trials == resumed.trials  # already complete: nothing runs


@pytest.mark.slow  # an Optuna grid study of six trials
def test_grid_enumerates_every_combination_and_records_failures(tree, tmp_path):
    space = _write_space(tmp_path, """
        space:
          model.name: {type: categorical, choices: [cnn3_bn, baseline_cnn]}
          model.kwargs.dropout: {type: float, low: 0.1, high: 0.6, grid: [0.3, 0.5]}
    """)
    result = tune(space, data=tree, out=tmp_path / "out", trials=10, sampler="grid", epochs=1, overrides=FAST)
    combos = {(t.params["model.name"], t.params["model.kwargs.dropout"]) for t in result.trials}
    assert len(result.trials) == 4 and combos == {(m, d) for m in ("cnn3_bn", "baseline_cnn") for d in (0.3, 0.5)}
    failed = [t for t in result.trials if t.state == "FAIL"]
    # baseline_cnn has no dropout option: those trials fail with the model's message, the study goes on.
    assert {t.params["model.name"] for t in failed} == {"baseline_cnn"} and len(failed) == 2
    assert all("baseline_cnn" in t.error and "dropout" in t.error for t in failed)
    assert result.best_params["model.name"] == "cnn3_bn"
    assert "FAIL" in {r["state"] for r in _csv_rows(tmp_path / "out" / "trials.csv")}


def test_pruned_trial_is_recorded_as_pruned(tree, tmp_path, monkeypatch):
    # Accuracy never exceeds 1.1, so this pruner stops every trial after its first epoch.
    monkeypatch.setattr(tune_module, "_make_pruner", lambda space, prune: optuna.pruners.ThresholdPruner(lower=1.1))
    space = SearchSpace((Param("optim.lr", "float", 1e-4, 1e-2, log=True),))
    with pytest.raises(FerlabError, match="no trial of study search completed"):
        tune(space, data=tree, out=tmp_path, trials=1, epochs=3, overrides=FAST)
    (row,) = _csv_rows(tmp_path / "trials.csv")
    assert row["state"] == "PRUNED" and 0 <= float(row["value"]) <= 1
    assert len(_csv_rows(tmp_path / "trials" / "0" / "metrics.csv")) == 1  # stopped after epoch 1 of 3


def test_example_space_loads_with_its_base():
    space = load_space(REPO / "configs" / "search" / "cnn.yaml")
    assert space.base == REPO / "configs" / "cnn3_bn.yaml" and space.name == "cnn"
    assert len(space.grid()["optim.lr"]) == 3


def test_grid_values_of_int_ranges_and_stepped_floats():
    assert Param("model.kwargs.dense", "int", 16, 64, step=16).grid_values() == [16, 32, 48, 64]
    assert Param("model.kwargs.dropout", "float", 0.1, 0.3, step=0.1).grid_values() == [0.1, 0.2, 0.3]
    assert Param("optim.lr", "float", 1e-4, 1e-2, log=True).grid_values() is None


@pytest.mark.parametrize(("text", "match"), [
    ("space: {data.bogus: {type: int, low: 1, high: 2}}", "space.yaml: search space key data.bogus is not a training"),
    ("space: {data: {type: int, low: 1, high: 2}}", "key data is a config section"),
    ("space: {data.batch_size: {type: categorical, choices: [a, 32]}}", "data.batch_size value 'a' does not fit"),
    ("space: {epochs: {type: float, low: 1.5, high: 3}}", "epochs value 1.5 does not fit"),
    ("space: {optim.lr: {type: float, low: 0.1, high: 0.01}}", "optim.lr: low \\(0.1\\) must be below high"),
    ("space: {optim.lr: {type: float, low: 0, high: 0.1, log: true}}", "optim.lr: log needs low > 0"),
    ("space: {optim.lr: {type: uniform, low: 0, high: 0.1}}", "optim.lr: type must be one of"),
    ("space: {optim.lr: {type: float, low: 0.1, high: 1, choices: [1]}}", "float takes .* not \\['choices'\\]"),
    ("space: {optim.name: {type: categorical, choices: []}}", "optim.name: categorical needs a non-empty list"),
    ("space: {data.classes: {type: categorical, choices: [[a, b]]}}", "data.classes: choices must be"),
    ("space: {model.kwargs.dense: {type: int, low: 16.5, high: 64}}", "model.kwargs.dense: low must be an integer"),
    ("space: {out: {type: categorical, choices: [a]}}", "key out is set by tune"),
    ("space: {}", "the space has no params"),
    ("spaces: {optim.lr: {type: float, low: 0.1, high: 1}}", "unknown keys \\['spaces'\\]"),
    ("base: nowhere.yaml\nspace: {optim.lr: {type: float, low: 0.1, high: 1}}", "base config .*nowhere.yaml does not"),
    ("metric: val_loss\nspace: {optim.lr: {type: float, low: 0.1, high: 1}}", "metric must be one of"),
    ("pruner: {patience: 3}\nspace: {optim.lr: {type: float, low: 0.1, high: 1}}", "unknown pruner keys"),
    ("space: [optim.lr]", "space must be a mapping"),
])
def test_bad_space_files_name_the_file_and_key(tmp_path, text, match):
    with pytest.raises(FerlabError, match=match) as err:
        load_space(_write_space(tmp_path, text))
    assert str(tmp_path / "space.yaml") in str(err.value)


def test_bad_arguments_fail_before_any_trial(tree, tmp_path):
    space = SearchSpace((Param("optim.lr", "float", 1e-4, 1e-2, log=True),))
    with pytest.raises(FerlabError, match="optim.lr=0.1.*tune chooses"):
        tune(space, data=tree, out=tmp_path, trials=2, overrides=["optim.lr=0.1"])
    with pytest.raises(FerlabError, match="grid sampler needs a grid for float params \\['optim.lr'\\]"):
        tune(space, data=tree, out=tmp_path, trials=2, sampler="grid")
    with pytest.raises(FerlabError, match="no such dataset: .*nowhere"):
        tune(space, data=tmp_path / "nowhere", out=tmp_path, trials=2)
    with pytest.raises(FerlabError, match="sampler must be one of"):
        tune(space, data=tree, out=tmp_path, trials=2, sampler="cmaes")
    with pytest.raises(FerlabError, match="cannot open study database nosuchdb://"):
        tune(space, data=tree, out=tmp_path, trials=2, storage="nosuchdb://x/y")
    assert not (tmp_path / "trials").exists()


def test_out_with_another_studys_trials_is_refused(tree, tmp_path):
    (tmp_path / "trials" / "0").mkdir(parents=True)
    space = SearchSpace((Param("optim.lr", "float", 1e-4, 1e-2, log=True),))
    with pytest.raises(FerlabError, match="holds runs \\['0'\\] that study search does not know"):
        tune(space, data=tree, out=tmp_path, trials=1)
