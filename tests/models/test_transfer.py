import pytest
import timm
import torch
from safetensors.torch import save_file

from ferlab.errors import FerlabError
from ferlab.models import apply_freeze, create_model, model_entry, parameter_blocks
from ferlab.models.transfer import BACKBONES, TransferNet

SMALL = {"num_classes": 7, "in_chans": 1, "input_size": 48}


def _trainable(model):
    return {id(p) for p in model.parameters() if p.requires_grad}


def _timm_file(tmp_path, name, in_chans=3, fmt="safetensors"):
    """A local 'pretrained' file: a randomly initialised timm model with its ImageNet classifier."""
    torch.manual_seed(1)
    source = timm.create_model(name, in_chans=in_chans)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return source, path


def test_short_names_carry_their_native_input():
    assert model_entry("resnet50").preprocessing.input_size == 224
    assert model_entry("inception_v3").preprocessing.input_size == 299
    assert model_entry("inception_v3").preprocessing.mean == (0.5, 0.5, 0.5)
    assert model_entry("timm:resnet18").preprocessing.channels == 3
    assert set(BACKBONES) <= {"mobilenetv2", "vgg16", "resnet50", "inception_v3", "efficientnet_b0", "convnext_tiny"}


def test_small_stem_keeps_more_resolution_than_the_native_one():
    small = create_model("timm:resnet18", **SMALL)
    native = create_model("timm:resnet18", **SMALL, stem="native")
    assert small.small_stem and not native.small_stem
    x = torch.randn(2, 1, 48, 48)
    assert small.backbone.forward_features(x).shape[-1] == 6  # 48 / 8: stride-1 stem conv, no stem max-pool
    assert native.backbone.forward_features(x).shape[-1] == 2  # 48 / 32, rounded up
    assert small(x).shape == native(x).shape == (2, 7)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_pretrained_local_file_gives_identical_weights_and_folds_the_stem_for_grayscale(tmp_path, fmt):
    source, path = _timm_file(tmp_path, "resnet18", fmt=fmt)
    rgb = create_model("timm:resnet18", num_classes=5, in_chans=3, input_size=224, pretrained=str(path))
    for key, value in source.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(rgb.backbone.state_dict()[key], value), key
    gray = create_model("timm:resnet18", num_classes=5, in_chans=1, input_size=224, pretrained=str(path))
    torch.testing.assert_close(gray.backbone.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(gray.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_pretrained_file_of_another_architecture_names_the_keys(tmp_path):
    _, path = _timm_file(tmp_path, "resnet18")
    with pytest.raises(FerlabError, match=r"does not fit timm's resnet34: keys missing \d+ \(e\.g\. layer1\.2"):
        create_model("timm:resnet34", **SMALL, pretrained=str(path))
    with pytest.raises(FerlabError, match="does not exist"):
        create_model("timm:resnet18", **SMALL, pretrained=str(tmp_path / "nope.pth"))


def test_hub_download_offline_fails_fast_with_instructions(monkeypatch):
    import socket

    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise socket.gaierror("no network")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    with pytest.raises(FerlabError, match=r"unreachable \(offline\?\).*--pretrained PATH"):
        create_model("timm:resnet18", **SMALL, pretrained="hub")


def test_saved_kwargs_never_ask_for_pretrained_weights_again(tmp_path):
    _, path = _timm_file(tmp_path, "resnet18")
    model = create_model("timm:resnet18", **SMALL, pretrained=str(path), head_hidden=32, head_dropout=0.2)
    assert "pretrained" not in model.stored_kwargs() and model.stored_kwargs()["head_hidden"] == 32


def test_head_options_shape_the_head():
    model = create_model("timm:resnet18", **SMALL, head_hidden=64, head_bn=True, head_dropout=0.3)
    kinds = [type(m).__name__ for m in model.head]
    assert kinds == ["BatchNorm1d", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert model.head[-1].out_features == 7
    with pytest.raises(FerlabError, match="stem must be"):
        create_model("timm:resnet18", **SMALL, stem="tiny")


@pytest.mark.parametrize(("policy", "expected_blocks"), [
    ("none", [0, 1, 2, 3, 4, 5]),
    ("backbone", [5]),
    ("last:2", [3, 4, 5]),
    ("first:2", [0, 1, 5]),
    ("gradual:3", [5]),
])
def test_freezing_policies_leave_exactly_the_intended_parameters_trainable(policy, expected_blocks):
    model = create_model("timm:resnet18", **SMALL)
    blocks = parameter_blocks(model)  # stem, layer1-4, head
    assert len(blocks) == 6
    trainable, total = apply_freeze(model, policy)
    expected = {id(p) for i in expected_blocks for p in blocks[i]}
    assert _trainable(model) == expected
    assert trainable == sum(p.numel() for i in expected_blocks for p in blocks[i])
    assert total == sum(p.numel() for p in model.parameters())


def test_bad_freezing_policies_are_named():
    model = create_model("timm:resnet18", **SMALL)
    for policy in ("half", "last:x", "gradual:0"):
        with pytest.raises(FerlabError, match="unknown freezing policy"):
            apply_freeze(model, policy)
    with pytest.raises(FerlabError, match="only 5 backbone blocks"):
        apply_freeze(model, "last:9")


def test_transfernet_is_a_plain_module_for_any_timm_name():
    model = TransferNet("mobilenetv2_050", **SMALL)
    x = torch.randn(2, 1, 48, 48)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
