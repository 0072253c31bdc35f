"""`calibrate`: a saved model's temperature refitted on a dataset, stored in its model.json."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ferlab.cli import main
from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.evaluation.calibration import calibrate
from ferlab.models import load_model
from ferlab.models.calibration import fit_temperature
from ferlab.models.onnx import OnnxModel
from tests.synthetic import write_tree


@pytest.fixture
def old_model(trained_run, tmp_path):
    """A copy of the trained model as saved before calibration existed: no temperature in model.json."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(trained_run / "model.safetensors", folder)
    meta = json.loads((trained_run / "model.json").read_text())
    del meta["temperature"]
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_calibrate_stores_the_temperature_and_writes_its_report(old_model, tree, tmp_path):
    data = shutil.copytree(tree, tmp_path / "data")
    for i in range(3):  # a class the model does not predict: left out and counted
        (data / "val" / "fear").mkdir(exist_ok=True)
        Image.new("L", (48, 48), 30 * i).save(data / "val" / "fear" / f"{i}.png")
    weights = (old_model / "model.safetensors").read_bytes()
    before = json.loads((old_model / "model.json").read_text())

    result = calibrate(old_model / "model.safetensors", data)
    report = result.to_dict()
    assert result.temperature == report["temperature"] and str(result.model) == report["model"]

    out = old_model / "calibration"
    assert json.loads((out / "calibration.json").read_text()) == report
    with Image.open(out / "reliability.png") as png:
        assert png.format == "PNG"
    assert report["split"] == "val" and report["samples"] == 30 and report["left_out"] == {"fear": 3}
    assert report["temperature_before"] == 1.0
    model = load_model(old_model)
    val = ImageDataset(open_dataset(tree).split("val"), model.classes, model.meta.preprocessing)
    expected = fit_temperature(torch.from_numpy(model.predict_logits(val.pixels)), val.targets)
    assert report["temperature"] == pytest.approx(expected, rel=1e-9) == model.meta.temperature
    assert json.loads((old_model / "model.json").read_text()) == {**before, "temperature": report["temperature"]}
    assert (old_model / "model.safetensors").read_bytes() == weights
    assert report["nll"]["after"] <= report["nll"]["before"]

    again = calibrate(old_model, tree, split="test", out=tmp_path / "recal").to_dict()  # recalibrating starts from the stored T
    assert again["temperature_before"] == report["temperature"] and again["split"] == "test"
    assert (tmp_path / "recal" / "calibration.json").is_file() and (tmp_path / "recal" / "reliability.png").is_file()
    np.testing.assert_allclose(load_model(old_model).predict_proba(val.pixels).sum(1), 1, atol=1e-6)


def test_calibrate_refuses_a_missing_split_and_leaves_the_model_alone(old_model, samples, tmp_path):
    bare = write_tree(samples[:30], tmp_path / "bare", split=False)
    stored = (old_model / "model.json").read_text()
    with pytest.raises(FerlabError, match="no 'val' split"):
        calibrate(old_model, bare)
    with pytest.raises(FerlabError, match="no model at .*nowhere"):
        calibrate(tmp_path / "nowhere", bare, split="all")
    assert (old_model / "model.json").read_text() == stored
    assert not (old_model / "calibration").exists()


@pytest.mark.parametrize(("stored", "kept"), [(0.5, False), (5.0, True)])
def test_calibrate_keeps_the_stored_temperature_unless_the_fit_lowers_nll(old_model, tree, stored, kept):
    # The synthetic val split is classified perfectly, so the fit gives 1.0: sharper than 5 (lower NLL), softer than 0.5.
    meta = json.loads((old_model / "model.json").read_text())
    (old_model / "model.json").write_text(json.dumps({**meta, "temperature": stored}))
    (old_model / "calibration.json").write_text(json.dumps({"split": "val", "temperature": stored}))  # training's

    report = calibrate(old_model, tree).to_dict()

    assert json.loads((old_model / "calibration" / "calibration.json").read_text()) == report
    assert report["temperature_before"] == stored and report["temperature_fitted"] == 1.0
    assert report["fitted_kept"] is kept and report["temperature"] == (1.0 if kept else stored)
    assert (report["nll"]["after"] < report["nll"]["before"]) is kept
    assert load_model(old_model).meta.temperature == report["temperature"]
    assert json.loads((old_model / "calibration.json").read_text()) == report  # beside model.json, not stale


def test_calibrate_stores_the_temperature_inside_an_onnx_export(old_model, trained_run, tree, tmp_path, capsys):
    """The export's embedded metadata gets the temperature its run would get, and nothing else changes."""
    export = shutil.copyfile(trained_run / "model.onnx", tmp_path / "cnn3.onnx")
    before = OnnxModel.load(export).meta
    assert main(["calibrate", "--model", str(export), "--data", str(tree), "--split", "test"]) == 0
    assert f"stored in {export}" in capsys.readouterr().out
    report = json.loads((tmp_path / "cnn3-calibration" / "calibration.json").read_text())
    assert report["model"] == str(export) and report["temperature_before"] == before.temperature
    assert OnnxModel.load(export).meta == replace(before, temperature=report["temperature"])
    run = calibrate(old_model, tree, split="test", out=tmp_path / "run")
    assert report["temperature_fitted"] == pytest.approx(run.calibration.temperature_fitted, rel=1e-4)
