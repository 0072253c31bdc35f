"""A run's own model.onnx: written by training and combine, used by inference as it is, kept in step with calibrate."""

import logging
import shutil

import numpy as np
import pytest

from ferlab.data import ImageDataset, open_dataset
from ferlab.inference import Recognizer
from ferlab.inference import recognizer as recognizer_module
from ferlab.models import load_model, save_ensemble
from ferlab.models.onnx import ONNX_NAME, OnnxModel
from ferlab.training import load_config, train


def _no_export(*args, **kwargs):
    raise AssertionError("inference exported the model although the run holds its own model.onnx")


@pytest.fixture(scope="module")
def exported_run(tree, tmp_path_factory):
    """Trained with training's export on (module fixtures are made before the conftest switches it off)."""
    out = tmp_path_factory.mktemp("runs") / "exported"
    train(load_config(values={"data.path": str(tree), "model.name": "cnn3_bn", "epochs": 2, "out": str(out),
                              "data.batch_size": 32}))
    return out


def _crops(tree, model):
    return ImageDataset(open_dataset(tree).split("test"), model.classes, model.meta.preprocessing).pixels


def test_training_writes_model_onnx_and_inference_uses_it_without_exporting(exported_run, tree, monkeypatch):
    assert (exported_run / ONNX_NAME).is_file()
    monkeypatch.setattr(recognizer_module, "_exported", _no_export)
    recognizer = Recognizer(exported_run, "none")
    assert recognizer.backend == "onnx"
    torch_model = load_model(exported_run)
    pixels = _crops(tree, torch_model)
    np.testing.assert_allclose(recognizer.model.predict_proba(pixels), torch_model.predict_proba(pixels), atol=1e-5)


def test_calibrate_updates_the_export_and_a_stale_export_is_passed_over(exported_run, tree, tmp_path, caplog):
    from ferlab.evaluation.calibration import calibrate
    from ferlab.models.io import save_temperature

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    calibrate(run, tree, split="val")
    assert OnnxModel.load(run / ONNX_NAME).meta == load_model(run).meta  # the new temperature rides along
    save_temperature(run, 2.5)  # model.json changes behind the export's back: it is stale now
    with caplog.at_level(logging.INFO, logger="ferlab.models.onnx_runtime"):
        recognizer = Recognizer(run, "none")
    assert recognizer.backend == "onnx" and recognizer.model.meta.temperature == 2.5  # exported afresh
    assert f"passing over {run / ONNX_NAME}: it was exported from another version of the model" in caplog.text


@pytest.mark.onnx_export
def test_combine_writes_the_ensembles_model_onnx(exported_run, tmp_path):
    save_ensemble([exported_run, exported_run], tmp_path / "ensemble")
    assert OnnxModel.load(tmp_path / "ensemble" / ONNX_NAME).meta == load_model(tmp_path / "ensemble").meta
