import csv
import json
import shutil

import pytest

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.evaluation import compare_models
from ferlab.models import build_model, load_model, save_model


@pytest.fixture(scope="module")
def untrained(trained_run, tmp_path_factory):
    """The trained run's architecture with fresh random weights: a model near chance."""
    folder = tmp_path_factory.mktemp("untrained")
    meta = load_model(trained_run).meta
    save_model(build_model(meta), meta, folder)
    return folder


def test_a_trained_and_an_untrained_model_differ_significantly(trained_run, untrained, tree, tmp_path):
    result = compare_models([trained_run, untrained], tree, tmp_path / "cmp")
    trained, random = result.rows
    assert trained["accuracy"] > random["accuracy"] and trained["samples"] == random["samples"] == 30
    (pair,) = result.pairs
    assert pair["images"] == 30 and pair["only_a"] > pair["only_b"] and pair["p_value"] < 0.01
    assert (tmp_path / "cmp" / "comparison.md").read_text() == result.markdown
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["mcnemar"][0]["p_value"] == pair["p_value"]
    for row in result.rows:
        assert (tmp_path / "cmp" / row["model"] / "metrics.json").is_file()


def test_a_model_against_its_copy_does_not_differ(trained_run, tree, tmp_path):
    copy = tmp_path / trained_run.name
    shutil.copytree(trained_run, copy)
    result = compare_models([trained_run, copy], tree, tmp_path / "cmp")
    assert [r["model"] for r in result.rows] == [f"{trained_run.name}-0", f"{trained_run.name}-1"]
    assert result.pairs[0]["p_value"] == 1.0 and result.pairs[0]["only_a"] == 0


def test_comparison_needs_two_models(trained_run, tree, tmp_path):
    with pytest.raises(FerlabError, match="at least two"):
        compare_models([trained_run], tree, tmp_path / "cmp")


def test_cli_evaluate_with_several_models_compares_them(trained_run, untrained, tree, tmp_path, capsys):
    assert main(["evaluate", "--model", str(trained_run), str(untrained), "--data", str(tree),
                 "--out", str(tmp_path / "cmp")]) == 0
    assert "McNemar" in capsys.readouterr().out
    with open(tmp_path / "cmp" / "comparison.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
