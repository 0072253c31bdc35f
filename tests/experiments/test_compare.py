import csv
import importlib
import shutil
import statistics
from pathlib import Path

import pytest
from PIL import Image

from ferlab.errors import FerlabError
from ferlab.experiments.compare import compare, load_grid

compare_module = importlib.import_module("ferlab.experiments.compare")

GRID = {
    "grid": {"model.name": ["baseline_cnn", "cnn3_bn"]},
    "seeds": [0, 1],
    # One epoch at a small learning rate, so that seeds differ (the std is not 0).
    "overrides": ["epochs=1", "optim.lr=1e-4", "data.batch_size=32"],
}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _no_training(*args, **kwargs):
    raise AssertionError("compare trained a run it should have reused")


@pytest.fixture(scope="module")
def compared(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    return compare(GRID, data=tree, out=out), out


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_results_have_a_row_per_run(compared):
    result, out = compared
    rows = _read(out / "results.csv")
    assert [r["run"] for r in rows] == ["baseline_cnn-s0", "baseline_cnn-s1", "cnn3_bn-s0", "cnn3_bn-s1"]
    assert all(r["status"] == "ok" and r["reused"] == "false" and not r["error"] for r in rows)
    assert all(0 <= float(r["best_val_acc"]) <= 1 and int(r["epochs_run"]) == 1 for r in rows)
    assert {r["model.name"]: int(r["parameters"]) for r in rows}["cnn3_bn"] > 0
    assert "eval_accuracy" not in rows[0]
    assert all((out / "runs" / r["run"] / "summary.json").is_file() for r in rows)
    assert [r.run for r in result.rows] == [r["run"] for r in rows]


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_summary_is_mean_and_std_over_seeds_best_first(compared):
    result, out = compared
    rows, summary = _read(out / "results.csv"), _read(out / "summary.csv")
    assert len(summary) == 2 == len(result.summary)
    for line in summary:
        mine = [r for r in rows if r["model.name"] == line["model.name"]]
        accs = [float(r["best_val_acc"]) for r in mine]
        assert float(line["val_acc_mean"]) == pytest.approx(statistics.fmean(accs), abs=1e-6)
        assert float(line["val_acc_std"]) == pytest.approx(statistics.stdev(accs), abs=1e-6)
        assert float(line["seconds_mean"]) == pytest.approx(statistics.fmean(float(r["seconds"]) for r in mine), abs=1e-5)
        assert (int(line["seeds"]), int(line["failed"]), line["parameters"]) == (2, 0, mine[0]["parameters"])
    means = [float(line["val_acc_mean"]) for line in summary]
    assert means == sorted(means, reverse=True)
    assert [s.combination.label for s in result.summary] == [line["label"] for line in summary]


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_markdown_table_and_curves(compared):
    result, out = compared
    lines = (out / "summary.md").read_text().splitlines()
    assert lines[0] == "| model.name | best val acc | epochs | time/run | params | seeds |"
    assert lines[1] == "|---|---|---|---|---|---|" and len(lines) == 4
    assert result.table_markdown.splitlines() == lines
    assert " ± " in lines[2] and lines[2].endswith("| 2 |")
    with Image.open(out / "curves.png") as png:
        assert png.format == "PNG" and png.width >= 1000 and png.height >= 800


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_rerun_reuses_runs_and_adds_evaluation(compared, tree, tmp_path, monkeypatch):
    _, first = compared
    out = shutil.copytree(first, tmp_path / "cmp")
    monkeypatch.setattr(compare_module, "train", _no_training)
    result = compare({**GRID, "evaluate": "test"}, data=tree, out=out)
    rows = _read(out / "results.csv")
    assert all(r["reused"] == "true" and r["status"] == "ok" for r in rows)
    assert all(r["eval_split"] == "test" and 0 <= float(r["eval_accuracy"]) <= 1 for r in rows)
    assert all(0 <= float(r["eval_macro_f1"]) <= 1 for r in rows)
    assert all((out / "runs" / r["run"] / "eval-test" / "metrics.json").is_file() for r in rows)
    assert "eval_accuracy_mean" in _read(out / "summary.csv")[0]
    assert "| test accuracy | test macro-F1 |" in result.table_markdown


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_changed_settings_are_not_silently_reused(compared, tree, tmp_path, monkeypatch):
    _, first = compared
    out = shutil.copytree(first, tmp_path / "cmp")
    monkeypatch.setattr(compare_module, "train", _no_training)
    with pytest.raises(FerlabError, match=r"baseline_cnn-s0 was trained with other values of epochs"):
        compare(GRID, data=tree, out=out, overrides=["epochs=3"])


def test_interrupted_run_is_refused_and_kept(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(compare_module, "train", _no_training)
    interrupted = tmp_path / "cmp" / "runs" / "cnn3_bn-s1"
    interrupted.mkdir(parents=True)
    (interrupted / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(FerlabError, match=r"cnn3_bn-s1 exists without summary.json.*delete or move it"):
        compare(GRID, data=tree, out=tmp_path / "cmp")
    assert [p.name for p in interrupted.iterdir()] == ["metrics.csv"]
    assert not (tmp_path / "cmp" / "results.csv").exists()


@pytest.mark.slow  # the module's trained grid: some 11 s
def test_failed_run_is_recorded_and_the_grid_goes_on(compared, tree, tmp_path, monkeypatch):
    _, first = compared
    out = shutil.copytree(first, tmp_path / "cmp")
    for run in ("cnn3_bn-s0", "cnn3_bn-s1"):  # in this copy, cnn3_bn is trained again, and fails
        shutil.rmtree(out / "runs" / run)

    def failing(cfg, callbacks=()):
        assert cfg.model.name == "cnn3_bn"
        raise FerlabError(f"{cfg.data.path}: something the user can fix")

    monkeypatch.setattr(compare_module, "train", failing)
    result = compare(GRID, data=tree, out=out)
    rows = _read(out / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    assert "something the user can fix" in rows[2]["error"] and rows[2]["best_val_acc"] == ""
    assert [(s.combination.slug, s.seeds, s.failed) for s in result.summary] == [("baseline_cnn", 2, 0), ("cnn3_bn", 0, 2)]
    assert "| cnn3_bn | - |" in result.table_markdown and "| 0 (2 failed) |" in result.table_markdown
    assert (out / "curves.png").is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grid:\n  optim.lrr: [0.1, 0.01]\n", r"grid key 'optim.lrr'.*optim.lrr"),
        ("grid:\n  model.name: []\n", r"grid key 'model.name' needs a non-empty list"),
        ("grid:\n  opt: [{optim.name: sgd, optim.lrr: 0.1}]\n", r"grid key 'opt'.*optim.lrr"),
        ("grid:\n  epochs: [one, two]\n", r"grid key 'epochs'.*epochs"),
        ("grid:\n  seed: [0, 1]\n", r"grid key 'seed' is set by compare \(from seeds\)"),
        ("grid:\n  epochs: [1, 2]\noverrides: [epochs=3]\n", r"override 'epochs=3' sets epochs, which the grid varies"),
        ("grid:\n  epochs: [1, 2]\nseed: [0]\n", r"unknown field\(s\) \['seed'\]"),
        ("grid:\n  epochs: [1, 2]\nevaluate: holdout\n", r"evaluate must be one of"),
        ("base: nowhere.yaml\ngrid:\n  epochs: [1, 2]\n", r"base: no such config file"),
    ],
)
def test_bad_grids_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(FerlabError, match=message) as caught:
        load_grid(path)
    assert str(path) in str(caught.value)


def test_missing_evaluation_split_fails_before_training(tree, samples, tmp_path, monkeypatch):
    from tests.synthetic import write_tree

    monkeypatch.setattr(compare_module, "train", _no_training)
    bare = write_tree(samples[:30], tmp_path / "bare", split=False)
    with pytest.raises(FerlabError, match="evaluate: test: .*no 'test' split"):
        compare({**GRID, "evaluate": "test"}, data=bare, out=tmp_path / "a")
    with pytest.raises(FerlabError, match="evaluate: auto: .*training images included"):
        compare({**GRID, "evaluate": "auto"}, data=bare, out=tmp_path / "b")


def test_mapping_values_set_several_keys_with_safe_unique_names(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("optim:\n  weight_decay: 0.0001\n")
    (tmp_path / "grids").mkdir()
    path = tmp_path / "grids" / "g.yaml"
    path.write_text(
        "base: ../base.yaml\n"
        "grid:\n"
        "  model.name: [baseline_cnn, deep_cnn]\n"
        "  optimizer: [{optim.name: sgd, optim.lr: 1e-2}, {optim.name: adam, optim.lr: 0.001}]\n"
        "  data.classes: [[angry, happy], [Angry/happy]]\n"
    )
    grid = load_grid(path)
    assert grid.base == base and grid.keys == ["model.name", "optim.name", "optim.lr", "data.classes"]
    combos = grid.combinations()
    assert len(combos) == 8
    assert combos[0].label == "baseline_cnn, sgd 0.01, [angry,happy]"
    assert combos[0].slug == "baseline_cnn-sgd_0.01-angry_happy"
    assert combos[1].slug == "baseline_cnn-sgd_0.01-Angry_happy-2"  # unique even where only case differs
    assert combos[-1].values == {"model.name": "deep_cnn", "optim.name": "adam", "optim.lr": 0.001, "data.classes": ["Angry/happy"]}


def test_shipped_grids_load():
    grids = sorted((Path(__file__).parents[2] / "configs" / "compare").glob("*.yaml"))
    assert grids
    for path in grids:
        grid = load_grid(path)
        assert grid.evaluate is not None and len(grid.combinations()) >= 2
