from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.data import ImageDataset, open_dataset
from ferlab.data.framing import Framing
from ferlab.errors import FerlabError
from ferlab.inference import Face, Recognizer, face_pixels
from ferlab.models import LoadedModel, load_model, save_model
from ferlab.models.onnx import export_onnx

WILD = Path(__file__).resolve().parents[3] / "shared" / "data" / "wild"
YUNET = Path(__file__).resolve().parents[3] / "shared" / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


@dataclass
class ScriptedDetector:
    """A fake detector that returns the scripted faces call by call (the last list again once the script ends)."""

    script: list[list[Face]]
    name: str = "scripted"
    calls: int = 0
    images: list[tuple[int, ...]] = field(default_factory=list)

    def detect(self, image: np.ndarray) -> list[Face]:
        self.images.append(image.shape)
        self.calls += 1
        return list(self.script[min(self.calls - 1, len(self.script) - 1)])


def paste(canvas: np.ndarray, crop: np.ndarray, x: int, y: int) -> Face:
    """Put a grayscale crop into an RGB canvas; the Face whose box covers it."""
    h, w = crop.shape
    canvas[y:y + h, x:x + w] = crop[:, :, None]
    return Face((x, y, w, h), 0.9)


@pytest.fixture(scope="module")
def model(trained_run):
    return load_model(trained_run)


def crops(tree, label: str, n: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((tree / "val" / label).iterdir())[:n]]


def test_detector_none_prepares_a_crop_exactly_as_training(model, tree):
    table = open_dataset(tree).split("val")
    expected = model.predict_proba(ImageDataset(table, model.classes, model.meta.preprocessing).pixels)
    results = Recognizer(model, "none", backend="torch").recognize_batch([s.source for s in table.samples])
    assert all(len(faces) == 1 for faces in results)
    got = np.array([[faces[0].probs[c] for c in model.classes] for faces in results])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert results[0][0].face.box == (0, 0, 48, 48)


def test_all_faces_of_a_batch_go_through_the_classifier_at_once(model, tree, monkeypatch):
    happy, angry = crops(tree, "happy", 2), crops(tree, "angry", 1)
    first, second = np.full((120, 200, 3), 90, np.uint8), np.full((100, 100, 3), 90, np.uint8)
    faces_first = [paste(first, happy[0], 10, 20), paste(first, angry[0], 120, 40)]
    faces_second = [paste(second, happy[1], 30, 30)]
    detector = ScriptedDetector([faces_first, faces_second, []])
    recognizer = Recognizer(model, detector, backend="torch", margin=0.0)
    batches = []
    predict = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda pixels, **kw: batches.append(len(pixels)) or predict(pixels, **kw))

    results = recognizer.recognize_batch([first, second, np.zeros((50, 60, 3), np.uint8)])
    assert batches == [3]  # three faces of three images, one call
    assert [len(r) for r in results] == [2, 1, 0]
    assert [r.face for r in results[0]] == faces_first
    prep = model.meta.preprocessing
    expected = predict(face_pixels(first, faces_first, prep, Framing(margin=0.0)))
    np.testing.assert_allclose([[r.probs[c] for c in model.classes] for r in results[0]], expected, atol=1e-6)
    assert [r.label for r in results[0]] == ["happy", "angry"]  # the planted classes
    assert results[0][0].to_dict()["box"] == [10, 20, 48, 48]
    assert set(results[0][0].to_dict()) == {"box", "score", "landmarks", "label", "probs"}

    batches.clear()
    assert recognizer.recognize(np.zeros((50, 60, 3), np.uint8)) == []
    assert batches == []  # no face: no classifier call


def test_test_time_augmentation_reaches_the_classifier(model, tree):
    table = open_dataset(tree).split("val")
    pixels = ImageDataset(table, model.classes, model.meta.preprocessing).pixels
    results = Recognizer(model, "none", backend="torch", tta="flip").recognize_batch([s.source for s in table.samples])
    got = np.array([[faces[0].probs[c] for c in model.classes] for faces in results])
    np.testing.assert_allclose(got, model.predict_proba(pixels, tta="flip"), atol=1e-6)


def test_onnx_backend_agrees_with_torch(trained_run, model, tree, tmp_path):
    from ferlab.models.onnx import OnnxModel, export_onnx

    sources = [s.source for s in open_dataset(tree).split("val").samples]
    torch_results = Recognizer(trained_run, "none", backend="torch").recognize_batch(sources)
    auto = Recognizer(trained_run, "none")  # onnxruntime is installed: auto exports the model
    assert auto.backend == "onnx" and isinstance(auto.model, OnnxModel)
    onnx_results = auto.recognize_batch(sources)
    for a, b in zip(torch_results, onnx_results):
        assert a[0].probs == pytest.approx(b[0].probs, abs=1e-4)
    path = export_onnx(model, tmp_path / "model.onnx")
    from_file = Recognizer(path, "none", backend="onnx")
    assert from_file.backend == "onnx" and from_file.classes == model.classes
    assert from_file.recognize(sources[0])[0].probs == pytest.approx(torch_results[0][0].probs, abs=1e-4)
    with pytest.raises(FerlabError, match="ONNX Runtime only"):
        Recognizer(path, "none", backend="torch")


def test_bad_options_and_inputs_are_named(model, tmp_path):
    with pytest.raises(FerlabError, match="unknown backend 'tf'"):
        Recognizer(model, "none", backend="tf")
    with pytest.raises(FerlabError, match="unknown face detector 'mtcnn'"):
        Recognizer(model, "mtcnn")
    with pytest.raises(FerlabError, match="choose one of none, flip, tencrop"):
        Recognizer(model, "none", tta="mirror")
    with pytest.raises(FerlabError, match="detector_path goes with a detector name"):
        Recognizer(model, ScriptedDetector([[]]), detector_path=tmp_path / "x.onnx")
    with pytest.raises(FerlabError, match="no bundled model 'tiny'; bundled: fast, accurate"):
        Recognizer.from_pretrained("tiny")
    with pytest.raises(FerlabError, match="no model at"):
        Recognizer(tmp_path / "missing", "none")
    (tmp_path / "fake.jpg").write_text("hello")
    with pytest.raises(FerlabError, match=r"cannot read image .*fake\.jpg"):
        Recognizer(model, "none", backend="torch").recognize(tmp_path / "fake.jpg")


@pytest.mark.skipif(not (WILD.is_dir() and YUNET.is_file()), reason="../shared photos or YuNet model missing")
def test_wild_photos_with_yunet(model):
    recognizer = Recognizer(model, "yunet", backend="torch", detector_path=YUNET)
    counts = {"single_face.jpg": 1, "two_people.jpg": 2, "multi_face.jpg": 5}  # ../shared/data/wild/README.md
    results = recognizer.recognize_batch([WILD / name for name in counts])
    assert [len(faces) for faces in results] == list(counts.values())
    for faces in results:
        assert [f.face.box[0] for f in faces] == sorted(f.face.box[0] for f in faces)  # left to right
        assert all(f.face.landmarks is not None and sum(f.probs.values()) == pytest.approx(1) for f in faces)


def test_a_face_is_cut_with_the_framing_stored_in_the_model(model, tree, tmp_path):
    """A crop pasted where the stored framing puts it comes back exactly, through torch, a saved copy and ONNX."""
    crop = crops(tree, "happy", 1)[0]  # (48, 48)
    framing = Framing(margin=0.2, scale_by="width", offset_y=-0.1)  # side 1.2 x width, centre 0.1 widths above the box's
    canvas = np.full((200, 240, 3), 90, np.uint8)
    paste(canvas, crop, 100, 60)
    box = (104, 63, 40, 50)  # width 40 -> side 48; box centre (124, 88) = crop centre (124, 84) + 0.1 x 40 down
    detector = ScriptedDetector([[Face(box, 0.9)]])
    framed = LoadedModel(model.module, replace(model.meta, framing={"scripted": framing}))
    expected = Recognizer(model, "none", backend="torch").recognize(np.repeat(crop[:, :, None], 3, axis=2))[0].probs
    save_model(framed.module, framed.meta, tmp_path / "framed")
    onnx_file = export_onnx(tmp_path / "framed", tmp_path / "framed.onnx")
    for source, backend in ((framed, "torch"), (tmp_path / "framed", "torch"), (onnx_file, "onnx")):
        recognizer = Recognizer(source, detector, backend=backend)
        assert recognizer.framing == framing
        got = recognizer.recognize(canvas)[0].probs
        assert got == pytest.approx(expected, abs=1e-5)
    # Another detector's faces, and an old model without a record, get the default framing; an override wins.
    assert Recognizer(framed, "none", backend="torch").framing == Framing()
    assert Recognizer(model, detector, backend="torch").framing == Framing()
    assert Recognizer(framed, detector, backend="torch", margin=0.5).framing == replace(framing, margin=0.5)
    with pytest.raises(FerlabError, match="margin"):
        Recognizer(framed, detector, backend="torch", margin=-1.5)
