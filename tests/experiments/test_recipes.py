"""`reproduce`: a chain of runs, each stage bound to the earlier runs it starts from, carried on after a stop."""

import csv
import importlib
from pathlib import Path

import lightning as L
import pytest
import yaml

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.experiments import load_recipe, reproduce
from ferlab.experiments.recipes import recipe_status, stage_configs
from ferlab.models import load_model
from ferlab.rundir import RunDir
from ferlab.training import load_config

recipes_module = importlib.import_module("ferlab.experiments.recipes")
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs" / "recipes").glob("*.yaml"))
STAGE_CONFIG = {"model": {"name": "baseline_cnn"}, "data": {"batch_size": 32}, "epochs": 1, "patience": 1}


def _write_recipe(folder: Path, stages: list[dict], configs: dict[str, dict]) -> Path:
    """A recipe in `folder` and its stage configs (name -> config contents), written beside it."""
    for name, content in configs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(content))
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def _three_stages(folder: Path, base_epochs: int = 1, student: bool = True) -> Path:
    """base; a fine-tune from base's weights; a student distilled from base."""
    return _write_recipe(folder, [
        {"name": "base", "config": "base.yaml"},
        {"name": "tuned", "config": "tuned.yaml", "init": "base"},
        *([{"name": "student", "config": "student.yaml", "teacher": "base"}] if student else []),
    ], {
        "base": {**STAGE_CONFIG, "epochs": base_epochs, "patience": base_epochs},
        "tuned": {**STAGE_CONFIG, "model": {"name": "baseline_cnn", "init": "fast"}, "optim": {"lr": 1e-4}},
        "student": {**STAGE_CONFIG, "distill": {"teacher": "accurate", "weight": 0.5}},
    })


def _no_training(*args, **kwargs):
    raise AssertionError("reproduce trained a stage it should have reused or refused")


@pytest.fixture(scope="module")
def reproduced(tree, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe")
    recipe = _three_stages(folder)
    return recipe, reproduce(recipe, data=tree, out=folder / "runs"), folder / "runs"


def test_each_stage_trains_from_the_runs_of_the_stages_it_names(reproduced):
    _, result, out = reproduced
    assert [(s.name, s.status) for s in result.stages] == [("base", "trained"), ("tuned", "trained"),
                                                           ("student", "trained")]
    tuned, student = (load_config(RunDir(out / name).config) for name in ("tuned", "student"))
    # The configs named the bundled models; the recipe bound those fields to its own runs.
    assert tuned.model.init == str(out.resolve() / "base") and tuned.distill.teacher is None
    assert student.distill.teacher == str(out.resolve() / "base") and student.model.init is None
    assert result.model_dir == out.resolve() / "student"
    assert load_model(result.model_dir).classes == load_model(out / "base").classes


def test_running_a_recipe_again_reuses_its_finished_stages(reproduced, tree, monkeypatch):
    recipe, first, out = reproduced
    monkeypatch.setattr(recipes_module, "train", _no_training)
    monkeypatch.setattr(recipes_module, "resume", _no_training)
    again = reproduce(recipe, data=tree, out=out)
    assert [s.status for s in again.stages] == ["reused"] * 3
    assert [(s.best_val_acc, s.best_epoch) for s in again.stages] == [(s.best_val_acc, s.best_epoch)
                                                                      for s in first.stages]
    status = recipe_status(recipe, data=tree, out=out)
    assert [(s.state, s.epochs_done, s.changed) for s in status] == [("finished", 1, ())] * 3
    assert [s.best_val_acc for s in status] == pytest.approx([s.best_val_acc for s in first.stages])


def test_a_stage_folder_trained_under_other_settings_is_refused_before_anything_trains(reproduced, tree, monkeypatch):
    recipe, _, out = reproduced
    monkeypatch.setattr(recipes_module, "train", _no_training)
    monkeypatch.setattr(recipes_module, "resume", _no_training)
    with pytest.raises(FerlabError, match=r"stage 'base': .*base was trained with other values of optim.lr; move it"):
        reproduce(recipe, data=tree, out=out, overrides=["optim.lr=0.5"])
    assert [s.changed for s in recipe_status(recipe, data=tree, out=out, overrides=["optim.lr=0.5"])] == [("optim.lr",)] * 3


class _CrashInSecondEpoch(L.Callback):
    """Stands in for a session stopped during a stage's second epoch, after its first checkpoint."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated stop")


def test_a_stopped_stage_resumes_from_its_checkpoint_and_the_chain_carries_on(tree, tmp_path):
    recipe = _three_stages(tmp_path, base_epochs=2, student=False)
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="simulated stop"):
        reproduce(recipe, data=tree, out=out, callbacks=[_CrashInSecondEpoch()])
    assert RunDir(out / "base").can_resume() and not RunDir(out / "base").is_finished()
    assert not (out / "tuned").exists()
    base, tuned = recipe_status(recipe, data=tree, out=out)
    assert (base.state, base.epochs_done, base.epochs, tuned.state, tuned.epochs_done) == ("stopped", 1, 2, "new", 0)
    result = reproduce(recipe, data=tree, out=out)
    assert [(s.name, s.status) for s in result.stages] == [("base", "resumed"), ("tuned", "trained")]
    with RunDir(out / "base").metrics.open(newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]


def test_the_status_of_an_unstarted_recipe_names_every_stage_and_trains_nothing(tree, tmp_path, capsys):
    recipe = _three_stages(tmp_path)
    assert main(["reproduce", str(recipe), "--data", str(tree), "--out", str(tmp_path / "runs"), "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| stage | state | epochs | best val acc | folder |"
    assert [line.split(" | ")[:4] for line in lines[2:]] == [["| base", "new", "0/1", "-"], ["| tuned", "new", "0/1", "-"],
                                                             ["| student", "new", "0/1", "-"]]
    assert not (tmp_path / "runs").exists()


def test_a_stage_whose_config_names_a_model_outside_the_recipe_is_refused(tree, tmp_path, capsys):
    recipe = _write_recipe(tmp_path, [{"name": "base", "config": "base.yaml"},
                                      {"name": "tuned", "config": "tuned.yaml"}],
                           {"base": STAGE_CONFIG, "tuned": {**STAGE_CONFIG, "model": {"name": "baseline_cnn",
                                                                                      "init": "fast"}}})
    out = tmp_path / "runs"
    assert main(["reproduce", str(recipe), "--data", str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "stage 'tuned': tuned.yaml sets model.init: fast, a model this recipe does not train" in err
    assert "(init: STAGE)" in err and not out.exists()
    assert main(["reproduce", str(recipe), "epochs=2", "out=elsewhere", "--data", str(tree), "--out", str(out)]) == 2
    assert ("the recipe sets data.path, distill.teacher, model.init, out itself; drop the override(s) out=elsewhere"
            in capsys.readouterr().err)


@pytest.mark.parametrize(("stages", "message"), [
    ([], r"a recipe is one key, stages: a non-empty list"),
    (["base.yaml"], r"stages\[0\]: expected a mapping with name, config, init, teacher"),
    ([{"name": "base", "config": "base.yaml", "epochs": 3}], r"stages\[0\]: unknown field\(s\) epochs"),
    ([{"name": "../base", "config": "base.yaml"}], r"stages\[0\].name: '../base' is not a folder name"),
    ([{"name": "base", "config": "base.yaml"}, {"name": "base", "config": "base.yaml"}],
     r"stages\[1\].name: 'base' names two stages"),
    ([{"name": "base", "config": "missing.yaml"}], r"stages\[0\].config: no such config file: .*missing.yaml"),
    ([{"name": "tuned", "config": "base.yaml", "init": "base"}, {"name": "base", "config": "base.yaml"}],
     r"stages\[0\].init: 'base' is not an earlier stage \(earlier: none\)"),
])
def test_a_malformed_recipe_is_refused_with_the_stage_and_field_named(tmp_path, stages, message):
    recipe = _write_recipe(tmp_path, stages, {"base": STAGE_CONFIG})
    with pytest.raises(FerlabError, match=message):
        load_recipe(recipe)


def test_the_shipped_recipes_end_in_their_bundled_model_and_share_the_stages_they_name_alike(tmp_path):
    """`make reference NAME=x` reports on runs/reference/x, and recipes sharing runs/reference must agree on a stage."""
    stages: dict[str, object] = {}
    for path in SHIPPED:
        recipe = load_recipe(path)
        assert recipe.stages[-1].name == path.stem
        for stage, cfg in zip(recipe.stages, stage_configs(recipe, "faces/", tmp_path)):
            assert stages.setdefault(stage.name, cfg) == cfg, f"{path.name}: stage {stage.name} differs"
    assert {p.stem for p in SHIPPED} == {"fast", "accurate"}


def test_the_fast_recipe_distills_fast_from_the_accurate_it_trains_first(tmp_path):
    recipe = load_recipe(ROOT / "configs" / "recipes" / "fast.yaml")
    *_, teacher, fast = stage_configs(recipe, "faces/", tmp_path)
    shipped = load_config(ROOT / "configs" / "reference-fast.yaml", values={"data.path": "faces/", "out": fast.out})
    assert fast.distill.teacher == teacher.out and shipped.distill.teacher == "accurate"
    shipped.distill.teacher = fast.distill.teacher
    assert shipped == fast
    assert teacher.data.framing == fast.data.framing and teacher.data.crop == fast.data.crop
