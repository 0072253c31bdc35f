import csv
import json
import shutil

import numpy as np
import pytest
import torch

from ferlab.data import ImageDataset, open_dataset
from ferlab.data.framing import Framing
from ferlab.errors import FerlabError
from ferlab.models import build_model, load_model
from ferlab.training import load_config, train
from ferlab.training.train import _best_state_dict


def test_run_folder_holds_config_metrics_and_model(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.yaml", "metrics.csv", "model.safetensors", "model.json", "summary.json"} <= names
    with open(trained_run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(float(r["seconds"]) > 0 and 0 <= float(r["val_acc"]) <= 1 for r in rows)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["classes"] == ["angry", "happy", "neutral"]
    assert load_config(trained_run / "config.yaml").data.image_size == 48


def test_training_beats_chance_on_held_out_data(trained_run, tree):
    model = load_model(trained_run)
    test = open_dataset(tree).split("test")
    data = ImageDataset(test, model.classes, model.meta.preprocessing)
    accuracy = (model.predict_proba(data.pixels).argmax(1) == data.targets.numpy()).mean()
    assert accuracy >= 0.8  # chance is 1/3


def test_saved_model_equals_best_checkpoint(trained_run):
    model = load_model(trained_run)
    reference = build_model(model.meta).eval()
    reference.load_state_dict(_best_state_dict(trained_run / "checkpoints" / "best.ckpt"))
    pixels = torch.randint(0, 255, (8, 1, 48, 48), dtype=torch.uint8)
    np.testing.assert_array_equal(model.predict_proba(pixels), load_model(trained_run).predict_proba(pixels))
    with torch.inference_mode():
        expected = torch.softmax(reference((pixels.float() / 255 - 0.5) / 0.5) / model.meta.temperature, 1).numpy()
    np.testing.assert_allclose(model.predict_proba(pixels), expected, rtol=0, atol=1e-6)


def test_training_calibrates_on_the_validation_split(trained_run, tree):
    from ferlab.models.calibration import fit_temperature

    report = json.loads((trained_run / "calibration.json").read_text())
    model = load_model(trained_run)
    assert report["split"] == "val" and report["samples"] == 30 and report["temperature_before"] == 1.0
    assert report["temperature"] == json.loads((trained_run / "model.json").read_text())["temperature"]
    # The synthetic validation split is classified perfectly: nothing to fit, so T stays 1 (see the refit below).
    assert model.meta.temperature == report["temperature"] == 1.0
    assert report["nll"]["after"] <= report["nll"]["before"]
    val = ImageDataset(open_dataset(tree).split("val"), model.classes, model.meta.preprocessing)
    refit = fit_temperature(torch.from_numpy(model.predict_logits(val.pixels)), val.targets)
    assert refit == pytest.approx(report["temperature"], rel=1e-4)  # fitted on the saved (best) weights


def test_calibration_can_be_switched_off(tree, tmp_path):
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1,
                              "model.name": "baseline_cnn", "calibrate": False})
    train(cfg)
    assert not (tmp_path / "run" / "calibration.json").exists()
    assert load_model(tmp_path / "run").meta.temperature == 1.0


def test_the_measured_framing_travels_with_the_model(tree, tmp_path):
    framing = {"yunet": {"margin": 0.24, "scale_by": "width", "offset_y": -0.02}, "haar": {"margin": 0.03}}
    (tmp_path / "framing.json").write_text(json.dumps(
        {"detectors": {name: {"framing": record} for name, record in framing.items()}}))
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1,
                              "model.name": "baseline_cnn", "data.framing": str(tmp_path / "framing.json")})
    train(cfg)
    meta = load_model(tmp_path / "run").meta
    assert {name: f.to_dict() for name, f in meta.framing.items()} == {
        name: Framing.from_dict(record).to_dict() for name, record in framing.items()}
    bad = load_config(values={"data.path": str(tree), "out": str(tmp_path / "bad"), "epochs": 1,
                              "data.framing": str(tmp_path / "missing.json")})
    with pytest.raises(FerlabError, match="cannot read the framing file"):
        train(bad)


def test_class_subset_travels_with_the_model(tree, tmp_path):
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1,
                              "data.classes": ["happy", "angry"], "model.name": "baseline_cnn"})
    train(cfg)
    assert load_model(tmp_path / "run").classes == ("angry", "happy")


def test_existing_run_folder_is_refused_and_kept(tree, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1})
    with pytest.raises(FerlabError, match="already exists and is not empty"):
        train(cfg)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]


def test_unknown_class_subset_fails_before_training(tree, tmp_path):
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "data.classes": ["fear"]})
    with pytest.raises(FerlabError, match="fear"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_same_seed_gives_the_same_model(tree, tmp_path):
    pixels = torch.randint(0, 255, (6, 1, 48, 48), dtype=torch.uint8)
    probs = []
    for name in ("a", "b"):
        cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / name), "epochs": 2, "seed": 7,
                                  "model.name": "baseline_cnn", "data.batch_size": 32})
        train(cfg)
        probs.append(load_model(tmp_path / name).predict_proba(pixels))
    np.testing.assert_array_equal(probs[0], probs[1])


def test_unreadable_image_is_skipped_and_reported(tree, tmp_path):
    copy = shutil.copytree(tree, tmp_path / "data")
    zero = copy / "train" / "angry" / "zero.png"
    zero.write_bytes(b"")
    cfg = load_config(values={"data.path": str(copy), "out": str(tmp_path / "run"), "epochs": 1})
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped"] == [str(zero)]
    assert zero.read_bytes() == b""


@pytest.mark.parametrize("options", [
    {"data.balance": "sampler", "data.augment.preset": "heavy"},
    {"data.balance": "oversample", "data.augment.preset": "medium"},
    {"data.balance": "effective", "data.augment.preset": "none", "data.augment.mixup": 0.4},
])
def test_balancing_and_augmentation_options_train(tree, tmp_path, options):
    cfg = load_config(values={"data.path": str(tree), "out": str(tmp_path / "run"), "epochs": 1, **options})
    result = train(cfg)
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert result.epochs_run == 1
    assert f"balance: {options['data.balance']}" in saved


def test_bad_augmentation_or_balance_is_refused_before_training(tree, tmp_path):
    values = {"data.path": str(tree), "out": str(tmp_path / "run")}
    with pytest.raises(FerlabError, match="data.augment: unknown augmentation preset 'wild'"):
        train(load_config(values={**values, "data.augment.preset": "wild"}))
    with pytest.raises(FerlabError, match="data.balance must be one of"):
        train(load_config(values={**values, "data.balance": "smote"}))
    assert not (tmp_path / "run").exists()


def test_soft_labels_from_manifest_votes_train(tree, tmp_path):
    from ferlab.data import Preprocessing, Sample, write_manifest

    table = open_dataset(tree)
    other = {"angry": "neutral", "happy": "angry", "neutral": "happy"}
    soft = table.with_samples(
        Sample(s.source, s.label, s.split, votes=((s.label, 0.75), (other[s.label], 0.25))) for s in table.samples
    )
    manifest = write_manifest(soft, tmp_path / "votes.csv")
    classes = ["angry", "happy", "neutral"]
    train_set = ImageDataset(open_dataset(manifest, soft_labels=True).split("train"), classes, Preprocessing())
    assert train_set.soft_targets is not None and sorted(train_set.soft_targets[0].tolist()) == [0.0, 0.25, 0.75]
    assert ImageDataset(open_dataset(manifest).split("train"), classes, Preprocessing()).soft_targets is None
    values = {"data.path": str(manifest), "data.soft_labels": True, "data.batch_size": 32}
    result = train(load_config(values={**values, "out": str(tmp_path / "run"), "epochs": 3}))
    assert result.best_val_acc > 0.6
    with pytest.raises(FerlabError, match="soft labels"):
        train(load_config(values={**values, "out": str(tmp_path / "run2"), "epochs": 1, "data.augment.mixup": 0.2}))
