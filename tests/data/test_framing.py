import json

import numpy as np
import pytest

from ferlab.data.framing import Framing, framing_from_boxes, read_framing
from ferlab.errors import FerlabError


def test_defaults_are_the_framing_models_had_before_it_was_stored():
    framing = Framing()
    assert (framing.margin, framing.scale_by, framing.offset_x, framing.offset_y, framing.align, framing.resample) == (
        0.25, "longer", 0.0, 0.0, True, "bilinear")
    assert framing.square((10, 20, 40, 80)) == (30.0, 60.0, 100.0)


def test_round_trips_through_a_dict():
    framing = Framing(margin=-0.1, scale_by="width", offset_x=0.05, offset_y=-0.2, align=False, resample="lanczos")
    assert Framing.from_dict(json.loads(json.dumps(framing.to_dict()))) == framing


@pytest.mark.parametrize(("record", "field"), [
    ({"margin": -1.0}, "margin"),
    ({"margin": float("nan")}, "margin"),
    ({"margin": "wide"}, "margin"),
    ({"offset_y": 0.7}, "offset_y"),
    ({"offset_x": -0.51}, "offset_x"),
    ({"scale_by": "area"}, "scale_by"),
    ({"resample": "cubic"}, "resample"),
    ({"align": "yes"}, "align"),
    ({"margn": 0.1}, "margn"),
])
def test_an_impossible_or_unknown_field_is_named(record, field):
    with pytest.raises(FerlabError, match=field):
        Framing.from_dict(record, "model.json")


def test_geometry_is_the_median_over_the_boxes_and_uses_the_steadier_side():
    rng = np.random.default_rng(0)
    n = 200
    width = 40 + rng.normal(0, 0.5, n)  # steady: the frame is 1.2 x the width
    height = width * rng.uniform(1.0, 1.6, n)  # varies a lot against the frame
    centre_x, centre_y = 24.0, 26.0  # the box centre sits 2 px (0.05 widths) below the frame's centre
    boxes = np.stack([centre_x - width / 2, centre_y - height / 2, width, height], axis=1)
    stats = framing_from_boxes(boxes, 48.0, crops=250, align=True)
    assert stats.framing.scale_by == "width"
    assert stats.framing.margin == pytest.approx(0.2, abs=0.01)
    assert stats.framing.offset_x == pytest.approx(0.0, abs=0.01)
    assert stats.framing.offset_y == pytest.approx(-0.05, abs=0.01)
    assert stats.detection_rate == pytest.approx(0.8)


def test_no_box_at_all_is_a_clear_error():
    with pytest.raises(FerlabError, match="no face was found in any of the 12 crops"):
        framing_from_boxes(np.zeros((0, 4)), 48.0, crops=12, align=True)


def test_a_framing_file_gives_each_detector_its_record(tmp_path):
    path = tmp_path / "framing.json"
    path.write_text(json.dumps({"detectors": {"yunet": {"framing": {"margin": 0.2, "scale_by": "width"}},
                                              "haar": {"framing": {"margin": 0.0}}}}))
    framings = read_framing(path)
    assert framings == {"yunet": Framing(margin=0.2, scale_by="width"), "haar": Framing(margin=0.0)}
    path.write_text("{}")
    with pytest.raises(FerlabError, match="not a framing file"):
        read_framing(path)
    with pytest.raises(FerlabError, match="cannot read the framing file"):
        read_framing(tmp_path / "missing.json")
