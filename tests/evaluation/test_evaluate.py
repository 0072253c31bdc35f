import csv
import json

import numpy as np
import pytest
from PIL import Image

from ferlab.errors import FerlabError
from ferlab.evaluation import evaluate
from ferlab.models import load_model
from tests.synthetic import write_tree


def test_evaluate_writes_what_it_promises(trained_run, zip_tree, tmp_path):
    metrics = evaluate(trained_run, zip_tree, tmp_path / "eval")
    assert metrics["samples"] == 30 and metrics["split"] == "test"  # auto picks the test split
    assert metrics["accuracy"] >= 0.8
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    with Image.open(tmp_path / "eval" / "confusion_matrix.png") as png:
        assert png.format == "PNG" and png.width > 200
    with open(tmp_path / "eval" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and set(rows[0]) == {"source", "true", "predicted", "angry", "happy", "neutral"}
    assert np.mean([r["true"] == r["predicted"] for r in rows]) == metrics["accuracy"]
    assert set(metrics["per_class"]) == {"angry", "happy", "neutral"}


def test_bare_class_tree_is_evaluated_whole(trained_run, samples, tmp_path):
    bare = write_tree(samples[:50], tmp_path / "bare", split=False)
    metrics = evaluate(trained_run, bare, tmp_path / "eval")
    assert metrics["samples"] == 50 and metrics["split"] == "unsplit"


def test_same_probabilities_from_every_source(trained_run, tree, fer_csv, tmp_path):
    by_source = []
    for i, data in enumerate((tree, fer_csv)):
        evaluate(trained_run, data, tmp_path / str(i), split="val")
        with open(tmp_path / str(i) / "predictions.csv") as handle:
            by_source.append(sorted(tuple(r.values())[1:] for r in csv.DictReader(handle)))
    assert by_source[0] == by_source[1]


def test_classes_the_model_lacks_are_refused(trained_run, tmp_path):
    (tmp_path / "fear").mkdir()
    Image.new("L", (48, 48)).save(tmp_path / "fear" / "a.png")
    with pytest.raises(FerlabError, match=r"classes \['fear'\] that the model does not predict"):
        evaluate(trained_run, tmp_path, tmp_path / "eval")


def test_missing_split_is_named(trained_run, samples, tmp_path):
    bare = write_tree(samples[:10], tmp_path / "bare", split=False)
    with pytest.raises(FerlabError, match="no 'test' split"):
        evaluate(load_model(trained_run), bare, tmp_path / "eval", split="test")
