import csv
import json

import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.inference import Predictor, Recognizer, predict_files
from ferlab.models import load_model
from tests.inference.test_recognizer import ScriptedDetector, paste


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def crops(model, **kwargs):
    return Recognizer(model, "none", backend="torch", **kwargs)


def test_predict_writes_csv_and_json(trained_run, tree, tmp_path):
    found = crops(trained_run).predict_files([tree / "test" / "happy", str(tree / "test" / "angry" / "*.png")],
                                             tmp_path)
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
    found = crops(model).predict_files([s.source for s in table.samples], tmp_path)
    got = np.array([[p.probs[c] for c in model.classes] for p in found.predictions])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    frame = found.to_frame()  # one row per face, a column per class
    assert list(frame.columns[:8]) == ["source", "face", "x", "y", "w", "h", "score", "label"]
    np.testing.assert_allclose(frame[list(model.classes)].to_numpy(), expected, atol=1e-6)


def test_the_deprecated_entry_points_still_predict_as_the_recognizer_does(trained_run, tree, tmp_path):
    sources = [s.source for s in open_dataset(tree).split("val").samples]
    expected = crops(trained_run).predict_files(sources).to_frame()
    with pytest.warns(DeprecationWarning, match="use Recognizer"):
        old = Predictor.from_path(trained_run).predict(sources)
    np.testing.assert_allclose([[p.probs[c] for c in p.probs] for p in old], expected.iloc[:, 8:].to_numpy(),
                               atol=1e-6)
    with pytest.warns(DeprecationWarning, match="predict_files"):
        found = predict_files(trained_run, sources, tmp_path, detector="none", backend="torch")
    assert [p.label for p in found.predictions] == list(expected["label"])


def test_pil_images_and_arrays_are_accepted(trained_run, tree):
    path = next((tree / "val" / "neutral").iterdir())
    recognizer = crops(trained_run)
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
        (from_file,), (from_pil,), (from_array,) = recognizer.recognize_batch([path, image, array])
        frame = recognizer.to_frame([path, image, array])
    assert from_pil.probs == from_file.probs
    assert from_array.probs == pytest.approx(from_file.probs, abs=1e-6)  # RGB -> L gives the same gray values
    assert from_file.label == from_pil.label == from_array.label
    assert list(frame["source"]) == [str(path), "<image 1>", "<image 2>"] and list(frame["face"]) == [0, 0, 0]


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

    found = Recognizer(trained_run, detector, backend="torch").predict_files([photos], tmp_path / "out")
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
    recognizer = Recognizer(trained_run, "haar", backend="torch")
    with pytest.raises(FerlabError, match="no such file or folder"):
        recognizer.predict_files([tmp_path / "missing.jpg"], tmp_path / "out")
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(FerlabError, match=r"none of the 1 input files could be read; .*cannot read image .*fake\.jpg"):
        recognizer.predict_files([tmp_path / "fake.jpg"], tmp_path / "out")
    with pytest.raises(FerlabError, match="no files match"):
        recognizer.predict_files([str(tmp_path / "*.png")], tmp_path / "out")
    assert (tmp_path / "fake.jpg").read_text() == "hello"


def test_test_time_augmentation_reaches_the_model(trained_run, tree, tmp_path):
    model = load_model(trained_run)
    table = open_dataset(tree).split("val")
    pixels = ImageDataset(table, model.classes, model.meta.preprocessing).pixels
    sources = [s.source for s in table.samples]
    for tta in ("flip", "tencrop"):
        got = crops(model, tta=tta).to_frame(sources)[list(model.classes)].to_numpy()
        np.testing.assert_allclose(got, model.predict_proba(pixels, tta=tta), atol=1e-6)
        assert not np.allclose(got, model.predict_proba(pixels), atol=1e-6)
    crops(trained_run, tta="flip").predict_files([tree / "val" / "happy"], tmp_path)
    assert json.loads((tmp_path / "predictions.json").read_text())["tta"] == "flip"
    with pytest.raises(FerlabError, match="choose one of none, flip, tencrop"):
        crops(model, tta="mirror")


def test_cli_predict(trained_run, tree, tmp_path, capsys):
    assert main(["predict", str(tree / "val" / "happy"), "--model", str(trained_run), "--out", str(tmp_path),
                 "--detector", "none", "--backend", "torch"]) == 0
    assert "10 faces in 10 images (0 without a face, 0 unreadable files skipped; classified on torch)" in \
        capsys.readouterr().out
    assert main(["predict", str(tree / "val" / "happy"), "--out", str(tmp_path / "x"), "--detector", "none"]) == 0
    bundled = json.loads((tmp_path / "x" / "predictions.json").read_text())  # the bundled default, fast
    assert bundled["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_cli_predict_without_an_output_folder_prints_a_line_per_face_or_json(trained_run, tree, tmp_path, capsys):
    happy = tree / "val" / "happy"
    args = ["predict", str(happy), "--model", str(trained_run), "--detector", "none", "--backend", "torch"]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 10 and all(line.split("\t")[2] == "0,0,48,48" for line in lines)
    assert {line.split("\t")[3] for line in lines} <= {"angry", "happy", "neutral"}
    assert "10 faces in 10 images" in captured.err and not any(tmp_path.iterdir())
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["predictions"]) == 10 and data["classes"] == ["angry", "happy", "neutral"]
