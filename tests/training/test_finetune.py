import json
import logging

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from ferlab.errors import FerlabError
from ferlab.models import load_model
from ferlab.training import load_config, train


@pytest.mark.slow  # a timm backbone through three unfreezing stages: some 30 s
def test_finetune_a_timm_backbone_from_a_local_file_with_gradual_unfreezing(tree, tmp_path, caplog):
    torch.manual_seed(0)
    weights = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet10t").state_dict().items()}, str(weights))
    cfg = load_config(values={
        "data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 3, "data.batch_size": 32,
        "model.name": "timm:resnet10t", "model.pretrained": str(weights), "model.freeze": "gradual:1",
        "optim.backbone_lr_scale": 0.1, "data.image_size": 48, "data.channels": 1,
    })
    with caplog.at_level(logging.INFO, logger="ferlab"):
        result = train(cfg)
    assert "epoch 1: last:1" in caplog.text and "epoch 2: last:2" in caplog.text
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["architecture"] == "timm:resnet10t" and "pretrained" not in meta["model_kwargs"]
    assert meta["preprocessing"]["input_size"] == 48 and meta["preprocessing"]["channels"] == 1
    model = load_model(tmp_path / "run")
    pixels = torch.randint(0, 255, (4, 1, 48, 48), dtype=torch.uint8)
    np.testing.assert_array_equal(model.predict_proba(pixels), load_model(tmp_path / "run").predict_proba(pixels))
    assert result.epochs_run == 3


def test_an_input_the_model_cannot_take_is_refused_before_training(tree, tmp_path):
    values = {"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1}
    with pytest.raises(FerlabError, match="cnn3_bn needs input_size >= 8"):
        train(load_config(values={**values, "data.image_size": 4}))
    with pytest.raises(FerlabError, match=r"data.image_size: input_size must lie in 1..1024"):
        train(load_config(values={**values, "data.image_size": 5000}))
    with pytest.raises(FerlabError, match=r"model 'inception_v3' cannot take 3x32x32 input: .*Kernel size can.t be greater"):
        train(load_config(values={**values, "model.name": "inception_v3", "data.image_size": 32,
                                  "model.kwargs": {"stem": "native"}}))
    with pytest.raises(FerlabError, match="model.freeze: unknown freezing policy"):
        train(load_config(values={**values, "model.freeze": "half"}))
    assert not (tmp_path / "run").exists()


def test_a_run_started_from_a_saved_model_begins_where_that_model_ended(trained_run, tree, tmp_path):
    # One epoch at a negligible learning rate: the warm start must already score what the saved model scores,
    # while the same epoch from fresh weights stays near chance (1/3).
    values = {"data.path": str(tree), "model.name": "cnn3_bn", "epochs": 1, "data.batch_size": 32,
              "optim.lr": 1e-9, "schedule.name": "none"}
    warm = train(load_config(values={**values, "out": str(tmp_path / "warm"), "model.init": str(trained_run)}))
    cold = train(load_config(values={**values, "out": str(tmp_path / "cold")}))
    saved = json.loads((trained_run / "summary.json").read_text())["best_val_acc"]
    assert warm.best_val_acc >= saved - 0.05 and warm.best_val_acc >= 0.8
    assert cold.best_val_acc < 0.6
    assert load_config(tmp_path / "warm" / "config.yaml").model.init == str(trained_run)


def test_a_saved_model_that_does_not_fit_the_run_is_refused_by_name(trained_run, tree, tmp_path):
    base = {"data.path": str(tree), "epochs": 1, "out": str(tmp_path / "run"), "model.init": str(trained_run)}
    with pytest.raises(FerlabError, match=r"config field model.init: .* is a cnn3_bn, this run trains a baseline_cnn"):
        train(load_config(values={**base, "model.name": "baseline_cnn"}))
    with pytest.raises(FerlabError, match=r"config field model.init: .* do not fit this run's cnn3_bn"):
        train(load_config(values={**base, "model.kwargs": {"dense": 64}}))
    with pytest.raises(FerlabError, match=r"config field model.init: .* predicts \['angry', 'happy', 'neutral'\]"):
        train(load_config(values={**base, "data.classes": ["angry", "happy"]}))
    with pytest.raises(FerlabError, match="config field model.init: no model at"):
        train(load_config(values={**base, "model.init": str(tmp_path / "nowhere")}))
    assert not (tmp_path / "run").exists()
