"""Measuring a dataset's framing by running a detector over its own crops."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.data.framing import read_framing
from ferlab.inference.detect import Face
from ferlab.inference.framing import measure_framing, write_framing

SHARED = Path(__file__).resolve().parents[3] / "shared"
FER2013 = SHARED / "data" / "fer2013" / "fer2013-train-val.zip"
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


class DarkBox:
    """Boxes the dark pixels of an image: exact on crops whose face is a dark rectangle on a light ground."""

    name = "darkbox"

    def detect(self, image: np.ndarray) -> list[Face]:
        ys, xs = np.nonzero(image.mean(axis=2) < 128)
        if not len(xs):
            return []
        return [Face((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)), 1.0)]


def _crops(root: Path, boxes: list[tuple[int, int, int, int]]) -> Path:
    for label in ("angry", "happy"):
        (root / "train" / label).mkdir(parents=True)
        for i, (x, y, w, h) in enumerate(boxes):
            crop = np.full((48, 48), 200, np.uint8)
            crop[y:y + h, x:x + w] = 40
            Image.fromarray(crop).save(root / "train" / label / f"{i}.png")
        Image.fromarray(np.full((48, 48), 200, np.uint8)).save(root / "train" / label / "blank.png")  # no face
    return root


def test_the_measured_framing_is_the_geometry_of_the_boxes(tmp_path):
    # Width 32 in every crop (the frame is 1.5 widths), heights vary; the box centre sits 2 px below the frame's.
    data = _crops(tmp_path / "crops", [(8, 6, 32, 40), (8, 10, 32, 32), (8, 2, 32, 48), (8, 8, 32, 36)])
    stats = measure_framing(data, DarkBox())
    assert stats.crops == 10 and stats.detected == 8 and stats.detection_rate == pytest.approx(0.8)
    framing = stats.framing
    assert framing.scale_by == "width"
    assert framing.margin == pytest.approx(0.5, abs=0.02)
    assert framing.offset_x == pytest.approx(0.0, abs=0.01)
    assert framing.offset_y == pytest.approx(-2 / 32, abs=0.01)


def test_the_framing_file_round_trips_into_training_records(tmp_path, monkeypatch):
    data = _crops(tmp_path / "crops", [(8, 6, 32, 40)])
    monkeypatch.setattr("ferlab.inference.framing.create_detector", lambda name, model_path=None: DarkBox())
    measured = write_framing(data, tmp_path / "framing.json", ["yunet", "haar"])
    written = json.loads((tmp_path / "framing.json").read_text())
    assert set(written["detectors"]) == {"yunet", "haar"} and written["detectors"]["haar"]["detected"] == 2
    assert read_framing(tmp_path / "framing.json") == {name: s.framing for name, s in measured.items()}


def test_the_cli_says_when_no_crop_holds_a_face(tmp_path, capsys):
    data = _crops(tmp_path / "crops", [])  # blank crops only
    assert main(["data", "framing", str(data), "--detector", "haar", "--out", str(tmp_path / "f.json")]) == 2
    assert "no face was found in any of the 2 crops" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()


@pytest.mark.skipif(not (FER2013.is_file() and YUNET.is_file()), reason="needs ../shared (FER2013 and YuNet)")
def test_fer2013_crops_are_framed_tighter_than_the_old_default():
    stats = measure_framing(FER2013, _yunet(), limit=150)
    assert stats.detection_rate > 0.8
    assert stats.framing.scale_by == "width" and 0.1 < stats.framing.margin < 0.4


def _yunet():
    from ferlab.inference.detect import create_detector

    return create_detector("yunet", model_path=YUNET)
