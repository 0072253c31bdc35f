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
