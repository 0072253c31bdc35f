"""The crop recipe and training speed: random crops, stored test-time views, bf16 and channels-last."""

import logging

import numpy as np
import pytest
import torch

from ferlab.data import ImageDataset, open_dataset
from ferlab.errors import FerlabError
from ferlab.models import load_model
from ferlab.training import load_config, resume, speed, train
from ferlab.training.speed import resolve_speed


@pytest.fixture(scope="module")
def crop_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "crop"
    train(load_config(values={
        "data.path": str(tree), "model.name": "cnn3_bn", "epochs": 6, "out": str(out), "data.batch_size": 32,
        "data.crop": 40, "data.tta": "tencrop",
    }))
    return out


def test_a_crop_model_trains_on_crops_and_keeps_its_views(crop_run, tree):
    model = load_model(crop_run)
    prep = model.meta.preprocessing
    assert (prep.input_size, prep.resize, model.meta.tta) == (40, 48, "tencrop")
    stored = load_config(crop_run / "config.yaml")
    assert (stored.data.image_size, stored.data.crop) == (48, 40)
    test = ImageDataset(open_dataset(tree).split("test"), model.classes, prep)
    assert test.pixels.shape[1:] == (1, 48, 48) and test[0][0].shape == (1, 40, 40)  # centre crop, no augmentation
    accuracy = (model.predict_proba(test.pixels).argmax(1) == test.targets.numpy()).mean()
    assert accuracy >= 0.8  # chance is 1/3
    np.testing.assert_array_equal(model.predict_proba(test.pixels), load_model(crop_run).predict_proba(test.pixels))


def test_training_augments_crop_models_with_random_crops(tree):
    from ferlab.data import build_augmentation
    from ferlab.data.augment import AugmentConfig
    from ferlab.data.transforms import Preprocessing

    prep = Preprocessing(input_size=40, resize=48)
    data = ImageDataset(open_dataset(tree).split("val"), ("angry", "happy", "neutral"), prep,
                        build_augmentation(AugmentConfig(preset="none", erasing=0.0001)))
    crops = {data[(0, key)][0].numpy().tobytes() for key in range(6)}
    assert data[(0, 0)][0].shape == (1, 40, 40) and len(crops) > 1  # the crop moves with the draw key


def test_the_resolved_precision_and_memory_format_are_written_into_the_run(crop_run):
    stored = load_config(crop_run / "config.yaml")
    expected = resolve_speed("cnn3_bn", "auto", None)
    assert (stored.precision, stored.channels_last) == expected
    assert stored.precision in ("bf16-mixed", "32")


def test_a_crop_larger_than_the_image_is_a_named_config_error(tree, tmp_path):
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "data.crop": 56})
    with pytest.raises(FerlabError, match="config field data.crop: the crop size 56 must not exceed the image size 48"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(FerlabError, match="config field data.tta must be one of"):
        load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "data.tta": "sixcrop"}).validate()


def test_bf16_without_hardware_support_falls_back_to_fp32_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(speed, "bf16_supported", lambda accelerator="auto": False)
    with caplog.at_level(logging.WARNING, logger="ferlab.training.speed"):
        assert resolve_speed("vgg_fer", "bf16-mixed", None) == ("32", False)
    assert [r.getMessage() for r in caplog.records] == [
        "precision bf16-mixed: this machine has no native bf16; training in 32-bit instead"]
    assert resolve_speed("vgg_fer", "auto", None) == ("32", False)
    monkeypatch.setattr(speed, "bf16_supported", lambda accelerator="auto": True)
    assert resolve_speed("vgg_fer", "auto", None) == ("bf16-mixed", True)
    assert resolve_speed("mini_xception", "auto", None) == ("32", False)  # depthwise: slower in bf16
    assert resolve_speed("vgg_fer", "32", True) == ("32", True)


@pytest.mark.slow
def test_bf16_and_fp32_training_reach_the_same_accuracy(tree, tmp_path):
    """Parity on a short run: bf16 autocast keeps fp32 master weights, so the result barely moves."""
    accuracies = {}
    for precision in ("32", "bf16-mixed"):
        if precision == "bf16-mixed" and not speed.bf16_supported():
            pytest.skip("no native bf16 on this machine")
        out = tmp_path / precision
        train(load_config(values={"data.path": str(tree), "model.name": "cnn3_bn", "epochs": 4, "out": str(out),
                                  "data.batch_size": 32, "precision": precision}))
        model = load_model(out)
        test = ImageDataset(open_dataset(tree).split("test"), model.classes, model.meta.preprocessing)
        accuracies[precision] = (model.predict_proba(test.pixels).argmax(1) == test.targets.numpy()).mean()
    assert min(accuracies.values()) >= 0.8 and abs(accuracies["32"] - accuracies["bf16-mixed"]) <= 0.1


def test_resuming_under_a_changed_config_is_refused_naming_the_keys(crop_run):
    stored = load_config(crop_run / "config.yaml")
    wanted = load_config(crop_run / "config.yaml", ["optim.lr=0.5", "epochs=9"])
    before = {p.name: p.stat().st_mtime_ns for p in crop_run.iterdir()}
    with pytest.raises(FerlabError, match=r"cannot resume .* under a changed config: epochs, optim.lr differ"):
        resume(crop_run, wanted=wanted)
    assert {p.name: p.stat().st_mtime_ns for p in crop_run.iterdir()} == before
    assert stored.epochs == 6


def test_channels_last_training_keeps_the_saved_weights_contiguous(crop_run):
    from safetensors.torch import load_file

    weights = load_file(str(crop_run / "model.safetensors"))
    assert all(t.is_contiguous() for t in weights.values())
    assert torch.isfinite(torch.cat([t.float().flatten() for t in weights.values()])).all()


def test_a_student_distilled_from_a_teacher_beats_chance_and_keeps_only_its_own_weights(crop_run, tree, tmp_path):
    out = tmp_path / "student"
    train(load_config(values={
        "data.path": str(tree), "model.name": "baseline_cnn", "epochs": 4, "out": str(out), "data.batch_size": 32,
        "data.crop": 40, "distill.teacher": str(crop_run), "distill.weight": 0.7, "distill.temperature": 3.0,
    }))
    student = load_model(out)
    test = ImageDataset(open_dataset(tree).split("test"), student.classes, student.meta.preprocessing)
    assert (student.predict_proba(test.pixels).argmax(1) == test.targets.numpy()).mean() >= 0.8
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(key.startswith("model.") for key in state)  # the student's weights, no teacher's


def test_a_teacher_with_other_input_or_classes_is_refused_by_name(crop_run, trained_run, tree, tmp_path):
    base = {"data.path": str(tree), "model.name": "baseline_cnn", "epochs": 1, "out": str(tmp_path / "run")}
    with pytest.raises(FerlabError, match=r"config field distill.teacher: .* takes Preprocessing\(input_size=40"):
        train(load_config(values={**base, "distill.teacher": str(crop_run)}))  # the student sees whole 48-px images
    with pytest.raises(FerlabError, match=r"config field distill.teacher: .* predicts \['angry', 'happy', 'neutral'\]"):
        train(load_config(values={**base, "distill.teacher": str(trained_run), "data.classes": ["angry", "happy"]}))
    with pytest.raises(FerlabError, match="config field distill.teacher: no model at"):
        train(load_config(values={**base, "distill.teacher": str(tmp_path / "nowhere")}))
    assert not (tmp_path / "run").exists()
