"""Evaluating the photo pipeline: detect, take the largest face, cut it with the model's framing, classify."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from ferlab.data.framing import Framing
from ferlab.errors import FerlabError
from ferlab.evaluation import compare_models, evaluate
from ferlab.evaluation.evaluate import evaluate_model
from ferlab.inference.detect import Face
from ferlab.models import load_model, save_model
from tests.synthetic import CLASSES

GREEN = (0, 255, 0)  # the photos' background: the gray crops never hold a pure green pixel


class GreenScreen:
    """Finds the one non-green region of an image: a face detector that is exact on these test photos."""

    name = "greenscreen"

    def detect(self, image: np.ndarray) -> list[Face]:
        ys, xs = np.nonzero(np.any(image != GREEN, axis=2))
        if not len(xs):
            return []
        return [Face((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)), 1.0)]


@pytest.fixture(scope="module")
def photos(tree, tmp_path_factory):
    """Each synthetic test crop pasted into a larger green photo; two photos of 'happy' show no face."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for label in CLASSES:
        (root / label).mkdir()
        for i, crop_path in enumerate(sorted((tree / "test" / label).iterdir())):
            photo = np.full((120, 160, 3), GREEN, np.uint8)
            x, y = rng.integers(0, 160 - 48), rng.integers(0, 120 - 48)
            photo[y:y + 48, x:x + 48] = np.asarray(Image.open(crop_path))[:, :, None]
            Image.fromarray(photo).save(root / label / f"{i}.png")
    for i in range(2):
        Image.fromarray(np.full((120, 160, 3), GREEN, np.uint8)).save(root / "happy" / f"empty{i}.png")
    return root


@pytest.fixture(scope="module")
def framed_run(trained_run, tmp_path_factory):
    """The trained run, saved again with a framing that cuts the green-screen box exactly (margin 0)."""
    model = load_model(trained_run)
    out = tmp_path_factory.mktemp("framed") / "run"
    save_model(model.module, replace(model.meta, framing={"greenscreen": Framing(margin=0.0)}), out)
    return out


def test_photos_are_scored_through_detection_and_a_photo_without_a_face_is_an_error(framed_run, tree, photos, tmp_path):
    on_crops = evaluate(framed_run, tree, tmp_path / "crops", split="test").to_dict()
    metrics = evaluate(framed_run, photos, tmp_path / "photos", split="all", detector=GreenScreen()).to_dict()
    assert metrics["photos"] == 32 and metrics["no_face"] == 2 and metrics["samples"] == 30
    assert metrics["detection_rate"] == pytest.approx(30 / 32)
    assert sorted(s.rsplit("/", 1)[-1] for s in metrics["no_face_sources"]) == ["empty0.png", "empty1.png"]
    # The framing cuts each crop back exactly, so the faces found score as the crops do.
    assert metrics["accuracy_of_detected"] == pytest.approx(on_crops["accuracy"])
    assert metrics["accuracy"] == pytest.approx(on_crops["accuracy"] * 30 / 32)
    assert metrics["macro_f1"] == pytest.approx(on_crops["macro_f1"])
    assert metrics["framing"] == Framing(margin=0.0).to_dict() and metrics["detector"] == "greenscreen"


def test_the_model_framing_is_what_cuts_the_faces(framed_run, trained_run, photos):
    framed = evaluate_model(framed_run, photos, split="all", detector=GreenScreen())
    loose = evaluate_model(framed_run, photos, split="all", detector=GreenScreen(), margin=1.0)
    default = evaluate_model(trained_run, photos, split="all", detector=GreenScreen())  # no record: margin 0.25
    assert loose.metrics["framing"]["margin"] == 1.0 and default.metrics["framing"] == Framing().to_dict()
    assert not np.allclose(framed.probs, loose.probs) and not np.allclose(framed.probs, default.probs)


def test_several_models_on_photos_are_compared_with_their_detection_rate(framed_run, trained_run, photos, tmp_path):
    result = compare_models([framed_run, trained_run], photos, tmp_path / "cmp", split="all", detector=GreenScreen())
    assert [row["detection_rate"] for row in result.rows] == [pytest.approx(30 / 32)] * 2
    assert "faces found" in result.markdown and result.pairs[0]["images"] == 30


def test_whole_photos_given_as_crops_get_a_warning_that_names_the_detector(framed_run, tree, tmp_path, caplog):
    big = tmp_path / "big"
    for label in CLASSES:
        (big / label).mkdir(parents=True)
        Image.fromarray(np.full((400, 300, 3), 120, np.uint8)).save(big / label / "a.png")
    with caplog.at_level("WARNING", logger="ferlab.evaluation.evaluate"):
        evaluate_model(framed_run, big, split="all")
    assert "look like whole photos" in caplog.text and "--detector yunet" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ferlab.evaluation.evaluate"):
        evaluate_model(framed_run, tree, split="test")  # 48-px crops
    assert "whole photos" not in caplog.text


def test_no_face_in_any_photo_is_a_clear_error(framed_run, tmp_path):
    for label in CLASSES:
        (tmp_path / "empty" / label).mkdir(parents=True)
        Image.fromarray(np.full((60, 60, 3), GREEN, np.uint8)).save(tmp_path / "empty" / label / "a.png")
    with pytest.raises(FerlabError, match="found no face in any of its 3 photos"):
        evaluate(framed_run, tmp_path / "empty", tmp_path / "out", split="all", detector=GreenScreen())
    with pytest.raises(FerlabError, match="margin applies to faces found by a detector"):
        evaluate(framed_run, tmp_path / "empty", tmp_path / "out", split="all", margin=0.1)
