"""`ferlab train` stopped by signals, resumed, restarted, or fed damaged checkpoints and too little data."""

import csv
import json
import os
import signal
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from ferlab.cli import main
from ferlab.errors import FerlabError
from ferlab.rundir import LAST_CHECKPOINT
from ferlab.training import load_config, train
from ferlab.training.callbacks import EpochSeeding
from ferlab.training.config import config_to_yaml
from tests.synthetic import make_samples, write_tree


def _errors(err: str) -> list[str]:
    """The error lines of ferlab's stderr (which also carries its INFO log)."""
    return [line for line in err.splitlines() if line.startswith("ferlab train: error:")]


def _train_args(tree, run, epochs: int = 2) -> list[str]:
    return ["train", "--data", str(tree), "--model", "baseline_cnn", "--epochs", str(epochs), "--out", str(run),
            "data.batch_size=32"]


class _CrashAtStart(L.Callback):
    """Stands in for a run killed during its first epoch, before any checkpoint."""

    def on_train_epoch_start(self, trainer, pl_module):
        raise RuntimeError("simulated crash")


@pytest.fixture
def send_signal(monkeypatch):
    """Arms one signal to this process when the second epoch starts (the first is checkpointed by then).

    `pause` seconds are spent in the first epoch, so that segment's time is large enough to measure.
    """
    sigint = signal.getsignal(signal.SIGINT)
    # A shell starts background jobs (`cmd &`, a CI script run so) with SIGINT ignored, which Python keeps;
    # these tests are about a run that Ctrl-C reaches, as in a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def arm(signum: int, pause: float = 0.0) -> None:
        original, fired = EpochSeeding.on_train_epoch_start, []

        def start(self, trainer, pl_module):
            original(self, trainer, pl_module)
            if trainer.current_epoch == 0:
                time.sleep(pause)
            if trainer.current_epoch == 1 and not fired:
                fired.append(signum)
                os.kill(os.getpid(), signum)

        monkeypatch.setattr(EpochSeeding, "on_train_epoch_start", start)

    yield arm
    signal.signal(signal.SIGINT, sigint)  # Lightning ignores Ctrl-C once it has handled one


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_exits_non_zero_and_prints_the_resume_command(tree, tmp_path, capsys, send_signal,
                                                                      signum, code):
    run = tmp_path / "run"
    send_signal(signum)
    assert main(_train_args(tree, run)) == code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"ferlab train: stopped by {signal.Signals(signum).name}") and last.endswith(
        f"ferlab train --resume {run}")
    assert (run / LAST_CHECKPOINT).is_file() and not (run / "summary.json").exists()


@pytest.mark.slow  # trains, stops and resumes a run
def test_a_resumed_run_records_the_time_of_all_its_segments(tree, tmp_path, send_signal):
    run = tmp_path / "run"
    send_signal(signal.SIGTERM, pause=3.0)
    assert main(_train_args(tree, run)) == 143
    assert main(["train", "--resume", str(run)]) == 0
    with (run / "metrics.csv").open() as handle:
        epochs = [float(row["seconds"]) for row in csv.DictReader(handle)]
    seconds = json.loads((run / "summary.json").read_text())["seconds"]
    assert len(epochs) == 2 and seconds >= sum(epochs) > 3.0  # the first segment's epoch counts too


def _fake_run(tree, run: Path, checkpoint: bytes) -> None:
    """A run folder with a resolved config.yaml and `checkpoint` as its last.ckpt."""
    cfg = load_config(values={"data.path": str(tree), "out": str(run), "model.name": "baseline_cnn", "epochs": 1})
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    (run / LAST_CHECKPOINT).write_bytes(checkpoint)


class _Planted:
    """Unpickling it would create a file: proof that a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _checkpoints(tmp_path) -> dict[str, bytes]:
    torch.save({"epoch": 0, "state_dict": {"model.w": torch.zeros(3)}, "loops": {}}, tmp_path / "real.ckpt")
    real = (tmp_path / "real.ckpt").read_bytes()
    torch.save({"state_dict": {}, "hook": _Planted(tmp_path / "ran")}, tmp_path / "evil.ckpt")
    torch.save({"model.w": torch.zeros(3)}, tmp_path / "bare.ckpt")
    return {"truncated": real[: len(real) // 2], "empty": b"", "text": b"not a checkpoint\n",
            "hostile": (tmp_path / "evil.ckpt").read_bytes(), "bare state dict": (tmp_path / "bare.ckpt").read_bytes()}


@pytest.mark.hostile
def test_a_damaged_or_hostile_last_checkpoint_is_refused_in_one_line(tree, tmp_path, capsys):
    for name, data in _checkpoints(tmp_path).items():
        run = tmp_path / name.replace(" ", "_")
        _fake_run(tree, run, data)
        assert main(["train", "--resume", str(run)]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"cannot resume {run}: checkpoints/last.ckpt is damaged" in err, (name, err)
        assert (run / LAST_CHECKPOINT).read_bytes() == data
    assert not (tmp_path / "ran").exists()


def _crashed_run(tree, run: Path) -> Path:
    """The folder of a run that died in its first epoch: only its config.yaml."""
    cfg = load_config(values={"data.path": str(tree), "out": str(run), "model.name": "baseline_cnn", "epochs": 1,
                              "data.batch_size": 32})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, callbacks=[_CrashAtStart()])
    assert [p.name for p in run.iterdir()] == ["config.yaml"]
    return run


@pytest.mark.hostile
def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed_or_restarted(tree, tmp_path):
    resumed = _crashed_run(tree, tmp_path / "resumed")
    assert main(["train", "--resume", str(resumed)]) == 0
    restarted = _crashed_run(tree, tmp_path / "restarted")
    assert main(_train_args(tree, restarted, epochs=1)) == 0
    for run in (resumed, restarted):
        assert json.loads((run / "summary.json").read_text())["epochs_run"] == 1 and (run / "model.safetensors").is_file()


@pytest.mark.hostile
def test_a_folder_with_anything_else_is_still_refused_and_kept(tree, tmp_path, capsys):
    run = _crashed_run(tree, tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    assert main(_train_args(tree, run, epochs=1)) == 2
    assert main(["train", "--resume", str(run)]) == 2
    hand_written = tmp_path / "hand"
    hand_written.mkdir()
    (hand_written / "config.yaml").write_text(f"# my settings\nepochs: 1\nout: {hand_written}\n")
    assert main(_train_args(tree, hand_written, epochs=1)) == 2
    assert capsys.readouterr().err.count("not empty") == 2
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "notes.txt"]
    assert (run / "notes.txt").read_text() == "mine"
    assert (hand_written / "config.yaml").read_text().startswith("# my settings")


@pytest.mark.hostile
def test_too_few_images_for_a_validation_split_are_refused_with_the_counts(tmp_path, capsys):
    samples = make_samples()
    angry = [s for s in samples if s[1] == "angry"][:2]
    happy = [s for s in samples if s[1] == "happy"][:5]
    small = write_tree(angry + happy, tmp_path / "small", split=False)
    assert main(_train_args(small, tmp_path / "run", epochs=1)) == 2
    (error,) = _errors(capsys.readouterr().err)
    assert "angry: 2" in error and "happy: 5" in error and "data.val_fraction=0.1" in error, error
    assert not (tmp_path / "run").exists()
    with pytest.raises(FerlabError, match="validation"):
        train(load_config(values={"data.path": str(small), "out": str(tmp_path / "run"), "epochs": 1}))


def test_training_prints_no_lightning_advert_or_deprecation_and_counts_epochs_from_one(tree, tmp_path, capsys,
                                                                                         caplog):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(_train_args(tree, tmp_path / "run", epochs=1)) == 0
    assert not [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))], caught
    assert not [r for r in caplog.records if "litlogger" in r.getMessage()]
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "Epoch 0" not in out


def test_resume_with_changed_settings_is_refused_naming_them_and_with_the_same_ones_continues(tree, tmp_path, capsys):
    run = _crashed_run(tree, tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    assert main(["train", "--resume", str(run), "--lr", "0.5", "data.crop=40"]) == 2
    assert _errors(capsys.readouterr().err) == [
        f"ferlab train: error: cannot resume {run} under a changed config: data.crop, optim.lr differ from its "
        "config.yaml; resume it as it is (ferlab train --resume DIR alone), or train a new --out"]
    assert (run / "config.yaml").read_bytes() == config
    stored = load_config(run / "config.yaml")
    assert main(["train", "--resume", str(run), f"optim.lr={stored.optim.lr}"]) == 0  # the same value is no change
