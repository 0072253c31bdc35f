import csv
import subprocess
import sys

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from ferlab.errors import FerlabError
from ferlab.training import ScheduleConfig, load_config, resume, train
from ferlab.training.optim import OPTIMIZERS, make_optimizer, make_schedule


def _values(tree, out, **more):
    return {"data.path": str(tree), "out": str(out), "data.batch_size": 32, "patience": 10, **more}


class _Crash(L.Callback):
    """Stands in for a killed process: fails when epoch `at` (0-based) starts, after `at` epochs were checkpointed."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError("simulated crash")


def _metrics(run):
    with (run / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _weights(path):
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_a_resumed_run_ends_with_the_uninterrupted_runs_weights(tree, tmp_path):
    options = {"epochs": 4, "data.augment.preset": "medium", "schedule.name": "cosine", "schedule.warmup_epochs": 1}
    straight = train(load_config(values=_values(tree, tmp_path / "a", **options)))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(load_config(values=_values(tree, tmp_path / "b", **options)), callbacks=[_Crash(at=2)])
    assert not (tmp_path / "b" / "model.safetensors").exists() and len(_metrics(tmp_path / "b")) == 2
    resumed = resume(tmp_path / "b")
    assert resumed.epochs_run == straight.epochs_run == 4
    for name in ("model.safetensors", "checkpoints/last.ckpt"):  # the best epoch's weights, and the last epoch's
        a, b = (_weights(tmp_path / run / name) for run in ("a", "b"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_resume_needs_a_run_with_a_checkpoint(tmp_path):
    with pytest.raises(FerlabError, match="no config.yaml"):
        resume(tmp_path)


@pytest.mark.parametrize("options", [
    {"optim.name": "sgd", "optim.lr": 0.05, "optim.nesterov": True, "schedule.name": "step", "schedule.step_size": 1},
    {"optim.name": "adamw", "optim.weight_decay": 0.01, "schedule.name": "onecycle", "optim.label_smoothing": 0.1},
    {"optim.name": "rmsprop", "optim.lr": 1e-3, "schedule.name": "plateau", "optim.l1": 1e-5, "optim.grad_clip": 1.0},
    {"precision": "bf16-mixed", "schedule.name": "cosine", "schedule.warmup_epochs": 1},
])
def test_optimizers_schedules_and_regularisers_train_and_are_recorded(tree, tmp_path, options):
    result = train(load_config(values=_values(tree, tmp_path / "run", epochs=2, **options)))
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert result.epochs_run == 2 and f"name: {options.get('schedule.name')}" in saved


def test_schedules_change_the_learning_rate_as_documented():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = make_optimizer("sgd", lr=0.1)([{"params": params}])
    entry = make_schedule(ScheduleConfig("cosine", warmup_epochs=2), epochs=5, steps_per_epoch=10)(optimizer)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        entry["scheduler"].step()
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.1) and lrs[2] > lrs[3] > lrs[4]
    optimizer = make_optimizer("adam", lr=0.1)([{"params": params}])
    entry = make_schedule(ScheduleConfig("onecycle"), epochs=2, steps_per_epoch=5)(optimizer)
    assert entry["interval"] == "step" and optimizer.param_groups[0]["lr"] < 0.1
    assert make_schedule(ScheduleConfig("none"), epochs=1, steps_per_epoch=1) is None
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "rmsprop"}


def test_bad_options_are_named_before_training(tree, tmp_path):
    for key, value, message in (("optim.name", "lion", "optim.name must be one of"),
                                ("schedule.name", "cyclic", "schedule.name must be one of"),
                                ("precision", "8", "precision must be one of"),
                                ("loggers", ["wandb"], "loggers may hold"),
                                ("optim.label_smoothing", 1.5, "label_smoothing")):
        with pytest.raises(FerlabError, match=message):
            train(load_config(values=_values(tree, tmp_path / "run", **{key: value})))
    assert not (tmp_path / "run").exists()


def test_tensorboard_logger_writes_events(tree, tmp_path):
    pytest.importorskip("tensorboard")
    train(load_config(values=_values(tree, tmp_path / "run", epochs=1, loggers=["tensorboard"])))
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.slow  # two DDP processes: some 25 s
def test_ddp_on_two_cpu_processes_trains_a_tiny_model(tree, tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "ferlab.cli", "train", "--data", str(tree), "--model", "cnn3_bn", "--epochs", "2",
               "--out", str(run), "--batch-size", "16", "accelerator=cpu", "devices=2", "strategy=ddp"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "model.safetensors").is_file() and len(_metrics(run)) == 2
    assert "world_size=2" in result.stderr or "distributed_backend=gloo" in result.stderr
