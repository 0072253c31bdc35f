import json
import subprocess
import sys

from ferlab import __version__
from ferlab.cli import main


def test_version_and_models_listing(capsys):
    result = subprocess.run([sys.executable, "-m", "ferlab.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"ferlab {__version__}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cnn3_bn" in out and "baseline_cnn" in out


def test_train_evaluate_predict(tree, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--model", "baseline_cnn", "--epochs", "2", "--out", str(run),
                 "--batch-size", "32", "optim.lr=5e-4"]) == 0
    assert "optim" in (run / "config.yaml").read_text() and "0.0005" in (run / "config.yaml").read_text()
    assert main(["evaluate", "--model", str(run), "--data", str(tree), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["samples"] == 30
    assert main(["predict", "--model", str(run / "model.safetensors"), str(tree / "test"), "--out",
                 str(tmp_path / "pred")]) == 0
    assert "30 predictions written" in capsys.readouterr().out


def test_expected_errors_exit_non_zero_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ferlab.cli", "evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "none"),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "ferlab evaluate: error:" in result.stderr and "model.safetensors is missing" in result.stderr
    assert "Traceback" not in result.stderr
