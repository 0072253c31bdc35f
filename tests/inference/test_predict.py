import csv
import json

import numpy as np
import pytest
from PIL import Image

from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.inference import Predictor, predict_files
from ferlab.models import load_model


def test_predict_writes_csv_and_json(trained_run, tree, tmp_path):
    predictions = predict_files(trained_run, [tree / "test" / "happy", str(tree / "test" / "angry" / "*.png")], tmp_path)
    assert len(predictions) == 20
    data = json.loads((tmp_path / "predictions.json").read_text())
    assert data["classes"] == ["angry", "happy", "neutral"]
    assert [p["source"] for p in data["predictions"]] == [p.source for p in predictions]
    with open(tmp_path / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == [p.label for p in predictions]
    assert all(abs(sum(float(r[c]) for c in data["classes"]) - 1) < 1e-4 for r in rows)
    correct = [p.label == ("happy" if "/happy/" in p.source else "angry") for p in predictions]
    assert np.mean(correct) >= 0.8


def test_prediction_preprocessing_equals_training_preprocessing(trained_run, tree):
    """A file through the Predictor gets the probabilities the evaluation pipeline gives it."""
    model = load_model(trained_run)
    table = open_dataset(tree).split("val")
    expected = model.predict_proba(ImageDataset(table, model.classes, model.meta.preprocessing).pixels)
    predictions = Predictor(model).predict([s.source for s in table.samples])
    got = np.array([[p.probs[c] for c in model.classes] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_pil_images_and_arrays_are_accepted(trained_run, tree):
    path = next((tree / "val" / "neutral").iterdir())
    predictor = Predictor.from_path(trained_run)
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
        from_file, from_pil, from_array = predictor.predict([path, image, array])
    assert from_pil.probs == from_file.probs
    assert from_array.probs == pytest.approx(from_file.probs, abs=1e-6)  # RGB -> L gives the same gray values
    assert from_file.label == from_pil.label == from_array.label


def test_bad_inputs_are_named(trained_run, tmp_path):
    with pytest.raises(FerlabError, match="no such file or folder"):
        predict_files(trained_run, [tmp_path / "missing.jpg"], tmp_path / "out")
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(FerlabError, match=r"cannot read image .*fake\.jpg"):
        predict_files(trained_run, [tmp_path / "fake.jpg"], tmp_path / "out")
    with pytest.raises(FerlabError, match="no files match"):
        predict_files(trained_run, [str(tmp_path / "*.png")], tmp_path / "out")
    assert (tmp_path / "fake.jpg").read_text() == "hello"


def test_test_time_augmentation_reaches_the_model(trained_run, tree, tmp_path):
    model = load_model(trained_run)
    table = open_dataset(tree).split("val")
    pixels = ImageDataset(table, model.classes, model.meta.preprocessing).pixels
    sources = [s.source for s in table.samples]
    for tta in ("flip", "tencrop"):
        got = np.array([[p.probs[c] for c in model.classes] for p in Predictor(model, tta=tta).predict(sources)])
        np.testing.assert_allclose(got, model.predict_proba(pixels, tta=tta), atol=1e-6)
        assert not np.allclose(got, model.predict_proba(pixels), atol=1e-6)
    predict_files(trained_run, [tree / "val" / "happy"], tmp_path, tta="flip")
    assert json.loads((tmp_path / "predictions.json").read_text())["tta"] == "flip"
    with pytest.raises(FerlabError, match="choose one of none, flip, tencrop"):
        Predictor(model, tta="mirror")
