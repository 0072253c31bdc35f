"""RunDir names the run-folder layout once; old runs (any ferlab version's files) read as before."""

import json

import pytest

from ferlab.errors import FerlabError
from ferlab.rundir import LAST_CHECKPOINT, RunDir, read_yaml


def test_paths_follow_the_documented_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.config == tmp_path / "config.yaml" and run.summary == tmp_path / "summary.json"
    assert run.metrics == tmp_path / "metrics.csv" and run.last_checkpoint == tmp_path / LAST_CHECKPOINT
    assert run.checkpoints == run.last_checkpoint.parent
    assert not run.is_finished() and not run.can_resume() and run.raw_config() is None and run.data_path() is None


def test_a_written_run_reads_back(tmp_path):
    run = RunDir(tmp_path)
    run.config.write_text("data:\n  path: faces/\noptim:\n  lr: 1e-4\n", encoding="utf-8")
    run.summary.write_text(json.dumps({"best_val_acc": 0.5}), encoding="utf-8")
    run.calibration.write_text(json.dumps({"temperature": 1.5}), encoding="utf-8")
    assert run.data_path() == "faces/" and run.raw_config()["optim"]["lr"] == pytest.approx(1e-4)
    assert run.is_finished() and run.read_summary() == {"best_val_acc": 0.5}
    assert run.read_calibration() == {"temperature": 1.5}
    run.refit_calibration.parent.mkdir()
    run.refit_calibration.write_text(json.dumps({"temperature": 2.0}), encoding="utf-8")
    assert run.read_calibration() == {"temperature": 2.0}  # a later `ferlab calibrate` wins


def test_damaged_files_are_named(tmp_path):
    run = RunDir(tmp_path)
    run.summary.write_text("{not json", encoding="utf-8")
    with pytest.raises(FerlabError, match="summary.json: not readable as JSON"):
        run.read_summary()
    run.config.write_text("data: [unclosed\n", encoding="utf-8")
    with pytest.raises(FerlabError, match="config.yaml: not readable as YAML"):
        run.data_path()
    with pytest.raises(FerlabError, match="no such grid file: .*nowhere.yaml"):
        read_yaml(tmp_path / "nowhere.yaml", "grid file")
