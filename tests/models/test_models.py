import json

import numpy as np
import pytest
import torch

from ferlab.data import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, ModelMeta, create_model, list_models, load_model, register_model, save_model
from ferlab.models.io import build_model

# Parameter counts at 48x48x1 and 7 classes (timm backbones with the small stem), so an
# accidental change of an architecture shows. The ensemble has no parameters of its own:
# it is built from trained members (tests/models/test_ensemble.py).
EXPECTED_PARAMS = {
    "baseline_cnn": 2_585_607, "cnn3_bn": 1_274_823, "cnn11": 2_345_607, "cnn5_leaky": 4_697_095,
    "deep_cnn": 7_182_535, "mini_xception": 56_951, "vgg_fer": 10_468_551,
    "mobilenetv2": 2_232_263, "vgg16": 134_288_071, "resnet50": 23_516_103, "inception_v3": 21_799_335,
    "efficientnet_b0": 4_015_939, "convnext_tiny": 27_822_439,
}
STANDALONE = [name for name in list_models() if name != "ensemble"]


def test_every_standalone_model_has_a_pinned_parameter_count():
    assert sorted(EXPECTED_PARAMS) == STANDALONE


#: Full-size models whose backward pass alone takes seconds: the slow tier runs them.
FULL_SIZE = {"vgg16"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in FULL_SIZE else n for n in STANDALONE])
def test_every_model_runs_forward_and_backward(name):
    model = create_model(name, num_classes=7, in_chans=1, input_size=48)
    x = torch.randn(2, 1, 48, 48)
    logits = model(x)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", STANDALONE)
def test_models_take_other_sizes_and_channels(name):
    with torch.device("meta"):  # shapes only, so the big backbones cost nothing
        model = create_model(name, num_classes=3, in_chans=3, input_size=64)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn3_bn")(lambda **_: torch.nn.Identity())
    with pytest.raises(FerlabError, match="unknown model 'resnet9000'"):
        create_model("resnet9000", num_classes=7)
    with pytest.raises(FerlabError, match="model 'cnn3_bn'"):
        create_model("cnn3_bn", num_classes=7, wings=2)


def _meta(**kwargs) -> ModelMeta:
    return ModelMeta("cnn3_bn", ("angry", "happy", "neutral"), Preprocessing(), {"dropout": 0.3, **kwargs})


def test_save_and_load_give_identical_probabilities(tmp_path):
    meta = _meta()
    model = build_model(meta).eval()
    save_model(model, meta, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    loaded = load_model(tmp_path / "model.safetensors")
    assert loaded.meta == meta
    pixels = torch.randint(0, 255, (5, 1, 48, 48), dtype=torch.uint8)
    expected = torch.softmax(model((pixels.float() / 255 - 0.5) / 0.5), 1).detach().numpy()
    np.testing.assert_allclose(loaded.predict_proba(pixels), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(load_model(tmp_path).predict_proba(pixels), LoadedModel(model, meta).predict_proba(pixels))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FerlabError, match="model.safetensors is missing"):
        load_model(tmp_path)
    meta = _meta()
    save_model(build_model(meta), meta, tmp_path)
    data = json.loads((tmp_path / "model.json").read_text())
    data["classes"] = ["angry", "happy"]
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(FerlabError, match="does not fit the cnn3_bn described in .*model.json"):
        load_model(tmp_path)
    del data["preprocessing"]
    (tmp_path / "model.json").write_text(json.dumps(data))
    with pytest.raises(FerlabError, match=r"model.json: missing field 'preprocessing'"):
        load_model(tmp_path)
