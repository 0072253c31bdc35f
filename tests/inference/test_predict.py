import csv
import json

import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.inference import Predictor, predict_files
from ferlab.models import load_model
from tests.inference.test_recognizer import ScriptedDetector, paste


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_csv_and_json(trained_run, tree, tmp_path):
    found = predict_files(trained_run, [tree / "test" / "happy", str(tree / "test" / "angry" / "*.png")], tmp_path,
                          detector="none", backend="torch")
    predictions = found.predictions
    assert len(predictions) == 20 and found.backend == "torch" and found.annotated == []
    data = json.loads((tmp_path / "predictions.json").read_text())
    assert data["classes"] == ["angry", "happy", "neutral"]
    assert [p["source"] for p in data["predictions"]] == [p.source for p in predictions]
    assert [i["faces"] for i in data["images"]] == [1] * 20 and data["unreadable"] == []
    rows = read_rows(tmp_path / "predictions.csv")
    assert [r["label"] for r in rows] == [p.label for p in predictions]
    assert {(r["face"], r["x"], r["y"], r["w"], r["h"]) for r in rows} == {("0", "0", "0", "48", "48")}
    assert all(abs(sum(float(r[c]) for c in data["classes"]) - 1) < 1e-4 for r in rows)
    correct = [p.label == ("happy" if "/happy/" in p.source else "angry") for p in predictions]
    assert np.mean(correct) >= 0.8
    assert not (tmp_path / "annotated").exists()


def test_detector_none_gives_the_training_preprocessing(trained_run, tree, tmp_path):
    """A crop through predict_files gets the probabilities the evaluation pipeline gives it."""
    model = load_model(trained_run)
    table = open_dataset(tree).split("val")
    expected = model.predict_proba(ImageDataset(table, model.classes, model.meta.preprocessing).pixels)
    found = predict_files(model, [s.source for s in table.samples], tmp_path, detector="none", backend="torch")
    got = np.array([[p.probs[c] for c in model.classes] for p in found.predictions])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    predictions = Predictor(model).predict([s.source for s in table.samples])
    np.testing.assert_allclose([[p.probs[c] for c in model.classes] for p in predictions], expected, atol=1e-6)


def test_pil_images_and_arrays_are_accepted(trained_run, tree):
    path = next((tree / "val" / "neutral").iterdir())
    predictor = Predictor.from_path(trained_run)
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
        from_file, from_pil, from_array = predictor.predict([path, image, array])
    assert from_pil.probs == from_file.probs
    assert from_array.probs == pytest.approx(from_file.probs, abs=1e-6)  # RGB -> L gives the same gray values
    assert from_file.label == from_pil.label == from_array.label
    assert (from_pil.source, from_array.source) == ("<image 1>", "<array 2>")


def test_faces_in_photos_give_rows_and_annotated_copies(trained_run, tree, tmp_path):
    happy, angry = (np.asarray(Image.open(next((tree / "val" / label).iterdir()))) for label in ("happy", "angry"))
    photos = tmp_path / "photos"
    (photos / "trip").mkdir(parents=True)
    group = np.full((100, 160, 3), 80, np.uint8)
    faces = [paste(group, happy, 10, 30), paste(group, angry, 100, 20)]
    Image.fromarray(group).save(photos / "trip" / "group.png")
    Image.fromarray(np.full((60, 60, 3), 200, np.uint8)).save(photos / "empty.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    detector = ScriptedDetector([[], faces])  # files sorted: broken.jpg (unread), empty.jpg, trip/group.png

    found = predict_files(trained_run, [photos], tmp_path / "out", detector=detector, backend="torch")
    assert detector.calls == 2
    assert [(p.source.rsplit("/", 1)[1], p.index, p.face.box) for p in found.predictions] == [
        ("group.png", 0, (10, 30, 48, 48)), ("group.png", 1, (100, 20, 48, 48))]
    assert list(found.faces.values()) == [0, 2] and list(found.unreadable) == [str(photos / "broken.jpg")]
    data = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [(i["source"].rsplit("/", 1)[1], i["faces"]) for i in data["images"]] == [("empty.jpg", 0), ("group.png", 2)]
    assert "cannot read image" in data["unreadable"][0]["error"] and data["detector"] == "scripted"
    rows = read_rows(tmp_path / "out" / "predictions.csv")
    assert [(r["face"], r["x"], r["y"], r["w"], r["h"], r["score"]) for r in rows] == [
        ("0", "10", "30", "48", "48", "0.9"), ("1", "100", "20", "48", "48", "0.9")]
    annotated = tmp_path / "out" / "annotated"
    assert found.annotated == [annotated / "empty.jpg", annotated / "trip" / "group.png"]
    drawn = np.asarray(Image.open(annotated / "trip" / "group.png"))
    assert drawn.shape == group.shape and not np.array_equal(drawn, group)  # boxes and labels drawn on a copy
    np.testing.assert_array_equal(drawn[70:, 60:90], group[70:, 60:90])  # away from the faces: untouched


def test_bad_inputs_are_named(trained_run, tmp_path):
    with pytest.raises(FerlabError, match="no such file or folder"):
        predict_files(trained_run, [tmp_path / "missing.jpg"], tmp_path / "out", backend="torch")
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(FerlabError, match=r"none of the 1 input files could be read; .*cannot read image .*fake\.jpg"):
        predict_files(trained_run, [tmp_path / "fake.jpg"], tmp_path / "out", backend="torch")
    with pytest.raises(FerlabError, match="no files match"):
        predict_files(trained_run, [str(tmp_path / "*.png")], tmp_path / "out", backend="torch")
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
    predict_files(trained_run, [tree / "val" / "happy"], tmp_path, detector="none", backend="torch", tta="flip")
    assert json.loads((tmp_path / "predictions.json").read_text())["tta"] == "flip"
    with pytest.raises(FerlabError, match="choose one of none, flip, tencrop"):
        Predictor(model, tta="mirror")


def test_cli_predict(trained_run, tree, tmp_path, capsys):
    assert main(["predict", str(tree / "val" / "happy"), "--model", str(trained_run), "--out", str(tmp_path),
                 "--detector", "none", "--backend", "torch"]) == 0
    assert "10 faces in 10 images (0 without a face, 0 unreadable files skipped; classified on torch)" in \
        capsys.readouterr().out
    assert main(["predict", str(tree / "val" / "happy"), "--out", str(tmp_path / "x"), "--detector", "none"]) == 0
    bundled = json.loads((tmp_path / "x" / "predictions.json").read_text())  # the bundled default, fast
    assert bundled["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
