"""ONNX export and ONNX Runtime: parity with PyTorch, metadata in the file, int8, the CLI and errors."""

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from ferlab.cli import main
from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models import Ensemble, LoadedModel, ModelMeta, build_model, load_model
from ferlab.models.onnx import (
    META_KEY,
    OnnxModel,
    check_parity,
    dataset_pixels,
    export_onnx,
    generated_pixels,
)
from tests.synthetic import CLASSES, make_samples

# Not the registry defaults: a graph that skipped or misplaced normalisation would disagree.
GRAY48 = Preprocessing(48, 1, (0.3,), (0.2,))
RGB40 = Preprocessing(40, 3, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def _fresh(arch: str, prep: Preprocessing, temperature: float = 1.0, seed: int = 0, **kwargs) -> LoadedModel:
    torch.manual_seed(seed)
    meta = ModelMeta(arch, CLASSES, prep, dict(kwargs), temperature)
    return LoadedModel(build_model(meta).eval(), meta)


def _pixels(prep: Preprocessing, n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, prep.channels, prep.input_size, prep.input_size), dtype=torch.uint8,
                         generator=generator)


def _synthetic_pixels() -> torch.Tensor:
    """180 synthetic faces (N, 1, 48, 48) from another seed than the training run's: a fixed held-out sample."""
    return torch.from_numpy(np.stack([image for _, _, image in make_samples(seed=1)])[:, None])


def _assert_parity(model: LoadedModel, path, pixels: torch.Tensor, tta: str = "none") -> None:
    onnx_model = OnnxModel.load(path, threads=1)
    np.testing.assert_allclose(onnx_model.predict_logits(pixels, tta=tta), model.predict_logits(pixels, tta=tta),
                               atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(onnx_model.predict_proba(pixels, tta=tta), model.predict_proba(pixels, tta=tta),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize(("arch", "prep"), [("mini_xception", RGB40), ("cnn5_leaky", GRAY48)])
def test_registered_cnns_match_torch_at_batch_1_and_5(arch, prep, tmp_path):
    model = _fresh(arch, prep, temperature=0.5)
    path = export_onnx(model, tmp_path / f"{arch}.onnx")
    inputs = onnx.load(path).graph.input
    assert [i.name for i in inputs] == ["pixels"] and inputs[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    for n in (1, 5):  # one graph, two batch sizes: the batch dimension is dynamic
        _assert_parity(model, path, _pixels(prep, n, seed=n))


def test_trained_model_matches_torch_with_tta(trained_run, tmp_path):
    """A trained model has confident, far-apart logits; flip TTA averages logits in both backends alike."""
    model = load_model(trained_run)
    path = export_onnx(trained_run, tmp_path / "cnn3.onnx")
    pixels = _synthetic_pixels()[::20]
    for tta in ("none", "flip"):
        _assert_parity(model, path, pixels, tta)
    parity = check_parity(model, OnnxModel.load(path), pixels)
    assert parity.samples == 9 and parity.max_abs_diff < 1e-4 and parity.top1_changed == 0


def test_ensemble_with_mixed_member_inputs_matches_torch(tmp_path):
    """Members of another size and channel count: the graph holds the grayscale mix and the antialiased resize."""
    members = [_fresh("cnn3_bn", GRAY48, temperature=2.0), _fresh("mini_xception", RGB40, seed=1)]
    prep = Preprocessing(64, 3, (0.0,) * 3, (1.0,) * 3)
    module = Ensemble(members, in_chans=3, input_size=64, method="mean").eval()
    model = LoadedModel(module, ModelMeta("ensemble", CLASSES, prep, module.stored_kwargs()))
    path = export_onnx(model, tmp_path / "ensemble.onnx")
    for n in (1, 5):
        _assert_parity(model, path, _pixels(prep, n, seed=n))


def test_metadata_round_trip_needs_no_other_file(tmp_path):
    model = _fresh("cnn3_bn", GRAY48, temperature=1.7, dense=64, dropout=0.3)
    path = export_onnx(model, tmp_path / "sub" / "m.onnx")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m.onnx"]  # no temporary left behind
    stored = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert json.loads(stored[META_KEY]) == model.meta.to_dict()
    loaded = OnnxModel.load(path)
    assert loaded.meta == model.meta and loaded.classes == CLASSES and loaded.meta.temperature == 1.7


@pytest.mark.slow  # an fp32 and an int8 export with calibration
def test_int8_is_smaller_and_keeps_top1(trained_run, tmp_path):
    """Default calibration (generated images); on a fixed held-out sample top-1 moves on under 1%."""
    model = load_model(trained_run)
    fp32 = export_onnx(model, tmp_path / "fp32.onnx")
    int8 = export_onnx(model, tmp_path / "int8.onnx", int8=True)
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size
    quantized = OnnxModel.load(int8)
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(int8).graph.node)
    assert quantized.meta == model.meta
    pixels = _synthetic_pixels()
    parity = check_parity(model, quantized, pixels)
    assert parity.samples == 180 and parity.top1_changed < 0.01
    assert 1e-6 < parity.max_abs_diff < 0.2  # quantised (not bit-identical), yet close


def test_dataset_pixels_sample_a_dataset(tree):
    pixels = dataset_pixels(tree, GRAY48, limit=30)
    assert pixels.shape == (30, 1, 48, 48) and pixels.dtype == torch.uint8
    assert dataset_pixels(tree, RGB40, limit=1000).shape == (180, 3, 40, 40)


def test_generated_pixels_are_smooth_and_span_the_range():
    pixels = generated_pixels(RGB40, count=8)
    assert pixels.shape == (8, 3, 40, 40) and pixels.dtype == torch.uint8
    assert pixels.min() < 30 and pixels.max() > 225
    steps = (pixels[..., 1:].float() - pixels[..., :-1].float()).abs().mean()
    assert steps < 15  # neighbours close: blobs, not white noise (about 85 on average)
    assert torch.equal(pixels, generated_pixels(RGB40, count=8))


def test_cli_writes_the_file_and_reports_parity(trained_run, tmp_path, capsys):
    out = tmp_path / "cnn3.onnx"
    assert main(["export", "--model", str(trained_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "fp32 ONNX model written to" in printed and " MB" in printed
    assert "top-1 changed on 0.00% of 64 images" in printed
    assert OnnxModel.load(out).classes == CLASSES
    assert "changes the top answer" not in capsys.readouterr().err


def test_cli_warns_when_an_export_changes_more_than_one_answer_in_a_hundred(trained_run, tmp_path, capsys,
                                                                            monkeypatch):
    from ferlab.models import onnx as onnx_module

    monkeypatch.setattr(onnx_module, "check_parity", lambda *args: onnx_module.Parity(64, 0.2, 0.0742))
    assert main(["export", "--model", str(trained_run), "--out", str(tmp_path / "int8.onnx"), "--int8"]) == 0
    err = capsys.readouterr().err
    assert "the export changes the top answer on 7.42% of the generated images (more than 1%)" in err
    assert "pass --calibration DATA" in err and f"ferlab evaluate --model {tmp_path / 'int8.onnx'}" in err


def test_an_fp32_export_quantises_as_its_run_does_and_other_exports_are_refused(trained_run, tmp_path, capsys):
    fp32 = trained_run / "model.onnx"
    out = tmp_path / "int8.onnx"
    assert main(["export", "--model", str(fp32), "--out", str(out), "--int8"]) == 0
    assert "int8 ONNX model written to" in (printed := capsys.readouterr().out)
    assert "parity with the fp32 export on generated images" in printed
    direct = export_onnx(trained_run, tmp_path / "direct.onnx", int8=True)
    pixels = _synthetic_pixels()
    np.testing.assert_allclose(OnnxModel.load(out).predict_proba(pixels), OnnxModel.load(direct).predict_proba(pixels),
                               atol=1e-6)
    assert OnnxModel.load(out).meta == OnnxModel.load(fp32).meta
    refused = {
        "copy.onnx": (["--model", str(fp32)], "is an ONNX export already; pass --int8"),
        "twice.onnx": (["--model", str(out), "--int8"], "is quantised already (DequantizeLinear, QuantizeLinear nodes)"),
    }
    for name, (argv, message) in refused.items():
        assert main(["export", *argv, "--out", str(tmp_path / name)]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / name).exists()
    assert main(["export", "--model", str(out), "--out", str(out), "--int8"]) == 2
    assert "is the export being quantised" in capsys.readouterr().err


def test_commands_that_need_pytorch_weights_name_the_export_they_were_given(trained_run, tree, tmp_path, capsys):
    export = str(trained_run / "model.onnx")
    face = str(next((tree / "test").rglob("*.png")))
    for argv in (["explain", "--model", export, face, "--out", str(tmp_path / "x")],
                 ["ensemble", str(trained_run), export, "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{export} is an ONNX export, which holds no PyTorch weights" in err, argv
        assert "the run folder or model .safetensors it was exported from" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "e").exists()


def test_missing_model_errors_cleanly(tmp_path, capsys):
    with pytest.raises(FerlabError, match="no model at"):
        export_onnx(tmp_path / "nowhere", tmp_path / "m.onnx")
    assert main(["export", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "ferlab export: error: no model at" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(FerlabError, match="no ONNX model at"):
        OnnxModel.load(tmp_path / "m.onnx")


def test_foreign_or_broken_onnx_files_error_cleanly(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(FerlabError, match="not a readable ONNX model"):
        OnnxModel.load(broken)
    proto = onnx.load(export_onnx(_fresh("cnn3_bn", GRAY48), tmp_path / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "foreign.onnx")
    with pytest.raises(FerlabError, match="no ferlab metadata"):
        OnnxModel.load(tmp_path / "foreign.onnx")


def test_bad_pixels_and_untraceable_models_error_cleanly(tmp_path):
    model = _fresh("cnn3_bn", GRAY48)
    onnx_model = OnnxModel.load(export_onnx(model, tmp_path / "m.onnx"))
    with pytest.raises(FerlabError, match=r"pixels must be uint8 \(N, 1, 48, 48\)"):
        onnx_model.predict_proba(_pixels(RGB40, 2))
    with pytest.raises(FerlabError, match="pixels must be uint8"):
        onnx_model.predict_proba(_pixels(GRAY48, 2).float())
    with pytest.raises(FerlabError, match="calibration pixels must be uint8"):
        export_onnx(model, tmp_path / "q.onnx", int8=True, calibration=_pixels(RGB40, 4))
    with pytest.raises(FerlabError, match="unknown test-time augmentation"):
        onnx_model.predict_proba(_pixels(GRAY48, 2), tta="rotate")

    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # branches on values: torch.export cannot trace it
            return torch.zeros(x.shape[0], 3) if x.sum() > 0 else torch.ones(x.shape[0], 3)

    with pytest.raises(FerlabError, match="cannot export cnn3_bn to ONNX"):
        export_onnx(LoadedModel(DataDependent(), model.meta), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
def test_timm_backbone_matches_torch(tmp_path):
    model = _fresh("mobilenetv2", GRAY48)
    path = export_onnx(model, tmp_path / "mobilenetv2.onnx")
    for n in (1, 5):
        _assert_parity(model, path, _pixels(GRAY48, n, seed=n))


@pytest.mark.hostile
@pytest.mark.slow  # three exports
def test_export_replaces_only_its_own_files_unless_forced(tmp_path):
    model = _fresh("cnn3_bn", GRAY48)
    mine = tmp_path / "notes.onnx"
    mine.write_text("mine")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(FerlabError, match="notes.onnx exists and is not a ferlab ONNX export; .* pass --force"):
        export_onnx(model, mine)
    with pytest.raises(FerlabError, match="folder.onnx is a folder"):
        export_onnx(model, tmp_path / "folder.onnx", force=True)
    assert mine.read_text() == "mine"

    export_onnx(model, mine, force=True)
    export_onnx(model, mine)  # an earlier export is ferlab's own: replaced
    proto = onnx.load(mine)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "foreign.onnx")
    foreign = (tmp_path / "foreign.onnx").read_bytes()
    with pytest.raises(FerlabError, match="not a ferlab ONNX export"):
        export_onnx(model, tmp_path / "foreign.onnx")
    assert (tmp_path / "foreign.onnx").read_bytes() == foreign
    assert OnnxModel.load(mine).classes == CLASSES


@pytest.mark.slow  # two exports of a crop model
def test_a_crop_model_exports_and_applies_its_own_views_from_the_file(tmp_path):
    prep = Preprocessing(40, 1, (0.3,), (0.2,), resize=48)
    torch.manual_seed(0)
    meta = ModelMeta("vgg_fer", CLASSES, prep, {"width": 0.25, "pool": True, "fc": 32}, 0.7, tta="tencrop")
    module = build_model(meta).eval()
    for layer in module.modules():  # statistics of a trained net, so that the outputs depend on the input
        if isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
            layer.running_mean.normal_(0, 0.5)
            layer.running_var.uniform_(0.05, 0.5)
    model = LoadedModel(module, meta)
    path = export_onnx(model, tmp_path / "crop.onnx")
    assert [d.dim_value for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim][1:] == [1, 40, 40]
    onnx_model = OnnxModel.load(path, threads=1)
    assert onnx_model.meta.tta == "tencrop" and onnx_model.meta.preprocessing.pixel_size == 48
    pixels = _synthetic_pixels()[:12]  # (12, 1, 48, 48): the images, the views are cut from them
    np.testing.assert_allclose(onnx_model.predict_proba(pixels), model.predict_proba(pixels, tta="tencrop"), atol=1e-4)
    assert not np.allclose(onnx_model.predict_proba(pixels), onnx_model.predict_proba(pixels, tta="none"), atol=1e-4)
    int8 = OnnxModel.load(export_onnx(model, tmp_path / "crop-int8.onnx", int8=True, calibration=pixels), threads=1)
    assert (int8.predict_proba(pixels).argmax(1) == model.predict_proba(pixels).argmax(1)).mean() >= 0.75
