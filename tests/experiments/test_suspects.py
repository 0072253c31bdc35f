import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ferlab.experiments.suspects as suspects_module
from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.experiments.suspects import find_suspects
from tests.synthetic import CLASSES, make_image

PER_CLASS = 60
FLIPPED = 6  # per class: 10% of the training images sit in the next class's folder
FOLDS = 3
# Small and quick: the classes differ by a band's height, which 24-pixel images keep.
TRAINING = {"folds": FOLDS, "epochs": 6, "overrides": ["data.batch_size=16", "data.image_size=24", "data.augment.preset=none"]}


def write_noisy_tree(root: Path) -> Path:
    """Training images with planted label flips (named flip_TRUECLASS_*), a test split, and one unreadable file."""
    rng = np.random.default_rng(1)
    for c, label in enumerate(CLASSES):
        for j in range(PER_CLASS):
            flipped = j < FLIPPED
            folder = root / "train" / (CLASSES[(c + 1) % 3] if flipped else label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(make_image(label, rng)).save(folder / f"{'flip' if flipped else 'img'}_{label}_{j:02d}.png")
        (root / "test" / label).mkdir(parents=True)
        for j in range(5):
            Image.fromarray(make_image(label, rng)).save(root / "test" / label / f"test_{j}.png")
    (root / "train" / "angry" / "broken.png").write_bytes(b"not an image")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on busy shared cores OpenMP's spin-waits make these tiny convolutions some 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def continued(tmp_path_factory):
    """A run interrupted twice (fold 2 mid-training, fold 3 before it began), then continued to the end.

    Returns the data, the output folder, the result, and the (fold, resumed) trainings of the continuing run.
    """
    data = write_noisy_tree(tmp_path_factory.mktemp("noisy"))
    out = tmp_path_factory.mktemp("suspects") / "out"
    real_train = suspects_module.train
    calls = []

    def interrupted_at_fold3(cfg, *args, **kwargs):
        if Path(cfg.out).name == "fold2":
            raise KeyboardInterrupt
        return real_train(cfg, *args, **kwargs)

    def recorded(cfg, *args, **kwargs):
        calls.append((Path(cfg.out).name, kwargs.get("resume", False)))
        return real_train(cfg, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(suspects_module, "train", interrupted_at_fold3)
        with pytest.raises(KeyboardInterrupt):
            find_suspects(data, out, **TRAINING)
        # Fold 2 as if stopped after its last checkpoint but before its model was saved.
        for name in ("summary.json", "model.safetensors", "model.json"):
            (out / "folds" / "fold1" / name).unlink()
        patch.setattr(suspects_module, "train", recorded)
        result = find_suspects(data, out, **TRAINING, gallery=12)
    return data, out, result, calls


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_continuing_reuses_finished_folds_and_resumes_the_interrupted_one(continued):
    _, out, result, calls = continued
    assert calls == [("fold1", True), ("fold2", False)]
    assert result.reused_folds == (0,)
    assert json.loads((out / "summary.json").read_text())["reused_folds"] == [0]
    assert all((out / "folds" / f"fold{i}" / "model.safetensors").is_file() for i in range(FOLDS))


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_planted_flips_rank_near_the_top(continued):
    _, _, result, _ = continued
    planted = FLIPPED * len(CLASSES)
    top = result.suspects[: 2 * planted]
    found = [s for s in top if Path(s.source).name.startswith("flip_")]
    assert len(found) >= 0.8 * planted
    # A found flip's suggestion is the class it was drawn from (flip_TRUECLASS_j.png).
    assert all(s.suggested == Path(s.source).name.split("_")[1] for s in found)
    assert result.accuracy >= 0.8  # out-of-fold, against labels 10% wrong


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_result_files_agree(continued):
    _, out, result, _ = continued
    summary = json.loads((out / "summary.json").read_text())
    # The train split only (no test images), the unreadable file counted and left out.
    assert summary["samples"] == result.samples == PER_CLASS * len(CLASSES)
    assert summary["split"] == "train" and summary["skipped"] == 1
    assert summary["skipped_sources"][0].endswith("broken.png") and summary["probabilities"] == "out-of-fold"
    oof = read_csv(out / "oof_probabilities.csv")
    assert list(oof[0]) == ["source", "label", *CLASSES] and len(oof) == result.samples
    by_source = {row["source"]: row for row in oof}
    rows = read_csv(out / "suspects.csv")
    assert [int(r["rank"]) for r in rows] == list(range(1, len(result.suspects) + 1))
    assert [r["source"] for r in rows] == [s.source for s in result.suspects]
    qualities = [float(r["quality"]) for r in rows]
    assert qualities == sorted(qualities)
    for row in rows:
        probs = by_source[row["source"]]
        assert probs["label"] == row["given"] == Path(row["source"]).parent.name != row["suggested"]
        assert float(probs[row["given"]]) == pytest.approx(float(row["p_given"]), abs=1e-6)
        assert float(probs[row["suggested"]]) == max(float(probs[c]) for c in CLASSES if c != row["given"])
    labels = np.array([row["label"] for row in oof])
    predicted = np.array(CLASSES)[np.array([[float(row[c]) for c in CLASSES] for row in oof]).argmax(1)]
    assert summary["accuracy"] == pytest.approx((predicted == labels).mean(), abs=1e-6)
    assert summary["suspects"] == len(rows) == sum(summary["suspects_per_class"].values())
    assert sum(pair["count"] for pair in summary["top_pairs"]) <= len(rows)
    assert summary["settings"]["folds"] == FOLDS and summary["settings"]["training"]["epochs"] == 6
    assert (out / "suspects.png").stat().st_size > 0


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_given_models_are_flagged_in_sample(continued, tmp_path):
    data, out, _, _ = continued
    fold = out / "folds" / "fold0"
    result = find_suspects(data, tmp_path / "given", models=[fold], gallery=4)
    summary = json.loads((tmp_path / "given" / "summary.json").read_text())
    assert result.in_sample == (str(fold),) and summary["in_sample_models"] == [str(fold)]
    assert summary["warning"] and summary["probabilities"] == "given models" and summary["folds"] is None
    assert len(read_csv(tmp_path / "given" / "suspects.csv")) == len(result.suspects)
    # Its probabilities are used as they are: the rows of the fold it held out (a third) match the out-of-fold ones.
    given = read_csv(tmp_path / "given" / "oof_probabilities.csv")
    oof = read_csv(out / "oof_probabilities.csv")
    assert [row["source"] for row in given] == [row["source"] for row in oof]
    assert abs(sum(a == b for a, b in zip(given, oof)) - PER_CLASS * len(CLASSES) / FOLDS) <= 1  # the 181st is unreadable
    # The same model on the test split, which it never saw: not in-sample.
    assert find_suspects(data, tmp_path / "test", models=[fold], split="test", gallery=0).in_sample == ()
    assert not (tmp_path / "test" / "suspects.png").exists()


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_a_model_is_recognised_in_sample_by_its_training_sketch_without_its_config(continued, tmp_path):
    data, out, _, _ = continued
    alone = tmp_path / "model"
    alone.mkdir()
    for name in ("model.safetensors", "model.json"):  # as a bundled model ships: no config.yaml naming its data
        shutil.copyfile(out / "folds" / "fold0" / name, alone / name)
    assert find_suspects(data, tmp_path / "given", models=[alone], gallery=0).in_sample == (str(alone),)
    assert find_suspects(data, tmp_path / "test", models=[alone], split="test", gallery=0).in_sample == ()


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_out_must_be_new_or_the_same_run(continued, tmp_path):
    data, out, _, _ = continued
    with pytest.raises(FerlabError, match="other settings .*training"):
        find_suspects(data, out, **{**TRAINING, "epochs": 2})
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FerlabError, match="already exists and is not empty"):
        find_suspects(data, tmp_path, **TRAINING)
    with pytest.raises(FerlabError, match="only apply when training"):
        find_suspects(data, tmp_path / "x", models=[out / "folds" / "fold0"], epochs=3)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # the module's k-fold run: some 7 s
def test_cli_continues_a_finished_run_and_scores_given_models(continued, tmp_path, capsys):
    data, out, result, _ = continued
    copy = shutil.copytree(out, tmp_path / "copy")
    (copy / "summary.json").unlink()
    assert main(["data", "suspects", str(data), *TRAINING["overrides"], "--out", str(copy), "--folds", str(FOLDS),
                 "--epochs", "6", "--gallery", "8"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(result.suspects)} suspects among {result.samples} images" in printed
    assert f"out-of-fold accuracy {result.accuracy:.4f}" in printed and result.suspects[0].source in printed
    assert (copy / "summary.json").is_file()
    assert main(["data", "suspects", str(data), "--out", str(tmp_path / "given"), "--models",
                 str(out / "folds" / "fold0"), "--gallery", "0"]) == 0
    assert "in-sample" in capsys.readouterr().out
    assert main(["data", "suspects", str(data), "--out", str(tmp_path / "bad"), "--folds", "1"]) == 2
    assert "folds must be at least 2" in capsys.readouterr().err


def test_an_exported_onnx_model_scores_suspects_as_its_run_does(trained_run, tree, tmp_path):
    """A given model may be an export: its run's probabilities, and recognised in-sample by its training sketch."""
    export = shutil.copyfile(trained_run / "model.onnx", tmp_path / "cnn3.onnx")
    from_run = find_suspects(tree, tmp_path / "run", models=[trained_run], gallery=0)
    from_export = find_suspects(tree, tmp_path / "export", models=[export], gallery=0)
    assert from_run.in_sample == (str(trained_run),) and from_export.in_sample == (str(export),)
    rows = {name: read_csv(tmp_path / name / "oof_probabilities.csv") for name in ("run", "export")}
    assert [r["source"] for r in rows["export"]] == [r["source"] for r in rows["run"]]
    probs = {name: [[float(r[c]) for c in CLASSES] for r in table] for name, table in rows.items()}
    np.testing.assert_allclose(probs["export"], probs["run"], atol=1e-5)
