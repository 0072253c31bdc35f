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
    metrics = evaluate(trained_run, zip_tree, tmp_path / "eval").to_dict()
    assert metrics["samples"] == 30 and metrics["split"] == "test"  # auto picks the test split
    assert metrics["accuracy"] >= 0.8
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    for name in ("confusion_matrix", "roc", "precision_recall", "reliability", "mistakes", "mistakes_gradcam",
                 "class_examples"):
        with Image.open(tmp_path / "eval" / f"{name}.png") as png:
            assert png.format == "PNG" and png.width > 200, name
    for key in ("balanced_accuracy", "top2_accuracy", "weighted_f1", "macro_auroc", "log_loss", "ece",
                "confusion_matrix_normalized"):
        assert key in metrics, key
    assert metrics["temperature"] > 0 and metrics["tta"] == "none" and metrics["left_out"] == {}
    with open(tmp_path / "eval" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and set(rows[0]) == {"source", "true", "predicted", "angry", "happy", "neutral"}
    assert np.mean([r["true"] == r["predicted"] for r in rows]) == metrics["accuracy"]
    assert set(metrics["per_class"]) == {"angry", "happy", "neutral"}


def test_test_time_augmentation_is_recorded_and_changes_probabilities(trained_run, tree, tmp_path):
    plain = evaluate(trained_run, tree, tmp_path / "plain").to_dict()
    flipped = evaluate(trained_run, tree, tmp_path / "flip", tta="flip").to_dict()
    assert flipped["tta"] == "flip" and flipped["samples"] == plain["samples"]
    assert flipped["log_loss"] != plain["log_loss"]  # the noise is not mirror-symmetric, so the views differ
    with pytest.raises(FerlabError, match="tencrop"):
        evaluate(trained_run, tree, tmp_path / "bad", tta="rotate")


def test_bare_class_tree_is_evaluated_whole(trained_run, samples, tmp_path):
    bare = write_tree(samples[:50], tmp_path / "bare", split=False)
    metrics = evaluate(trained_run, bare, tmp_path / "eval").to_dict()
    assert metrics["samples"] == 50 and metrics["split"] == "unsplit"


def test_same_probabilities_from_every_source(trained_run, tree, fer_csv, tmp_path):
    by_source = []
    for i, data in enumerate((tree, fer_csv)):
        evaluate(trained_run, data, tmp_path / str(i), split="val")
        with open(tmp_path / str(i) / "predictions.csv") as handle:
            by_source.append(sorted(tuple(r.values())[1:] for r in csv.DictReader(handle)))
    assert by_source[0] == by_source[1]


def test_classes_the_model_lacks_are_left_out_and_reported(trained_run, samples, tmp_path):
    data = write_tree(samples[:60], tmp_path / "data", split=False)  # the 40 + 20 first: angry, happy (train split)
    (data / "fear").mkdir()
    for i, (_, _, image) in enumerate(samples[:5]):
        Image.fromarray(image).save(data / "fear" / f"f{i}.png")
    metrics = evaluate(trained_run, data, tmp_path / "eval").to_dict()
    assert metrics["left_out"] == {"fear": 5} and metrics["samples"] == 60
    assert metrics["per_class"]["neutral"]["support"] == 0 and metrics["per_class"]["neutral"]["auroc"] is None


def test_merge_maps_a_class_only_on_request(trained_run, samples, tmp_path):
    data = tmp_path / "data"
    for i, (_, label, image) in enumerate(samples[:120]):
        folder = data / ("contempt" if label == "neutral" else label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    plain = evaluate(trained_run, data, tmp_path / "plain").to_dict()
    merged = evaluate(trained_run, data, tmp_path / "merged", merge={"neutral": ["contempt"]}).to_dict()
    assert plain["left_out"] == {"contempt": 40} and plain["samples"] == 80
    assert merged["left_out"] == {} and merged["per_class"]["neutral"]["support"] == 40


def test_data_without_any_class_of_the_model_is_refused(trained_run, tmp_path):
    (tmp_path / "fear").mkdir()
    Image.new("L", (48, 48)).save(tmp_path / "fear" / "a.png")
    with pytest.raises(FerlabError, match=r"no images of the model's classes .* \(only \['fear'\]\)"):
        evaluate(trained_run, tmp_path, tmp_path / "eval")


def test_missing_split_is_named(trained_run, samples, tmp_path):
    bare = write_tree(samples[:10], tmp_path / "bare", split=False)
    with pytest.raises(FerlabError, match="no 'test' split"):
        evaluate(load_model(trained_run), bare, tmp_path / "eval", split="test")


def test_an_exported_onnx_file_evaluates_like_its_run(trained_run, tree, tmp_path, capsys):
    from ferlab.cli import main
    from ferlab.models.onnx import export_onnx

    path = export_onnx(trained_run, tmp_path / "model.onnx")
    assert main(["evaluate", "--model", str(path), "--data", str(tree), "--out", str(tmp_path / "onnx")]) == 0
    from_onnx = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    from_run = evaluate(trained_run, tree, tmp_path / "run").to_dict()
    assert from_onnx["model"] == str(path) and from_onnx["accuracy"] == from_run["accuracy"]
    assert from_onnx["log_loss"] == pytest.approx(from_run["log_loss"], abs=1e-5)
    assert (tmp_path / "onnx" / "mistakes.png").is_file() and not (tmp_path / "onnx" / "mistakes_gradcam.png").exists()


def test_evaluate_returns_a_typed_result_that_still_reads_as_the_old_dict(trained_run, tree, tmp_path):
    result = evaluate(trained_run, tree, tmp_path / "eval")
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result.to_dict() == written and result.accuracy == written["accuracy"] and result.samples == written["samples"]
    assert result.files["confusion_matrix"] == tmp_path / "eval" / "confusion_matrix.png"
    assert "macro_f1" in result
    with pytest.warns(DeprecationWarning, match=r"EvaluateResult\['accuracy'\] is deprecated"):
        assert result["accuracy"] == result.accuracy
