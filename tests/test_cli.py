import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ferlab import __version__
from ferlab._commands import TRAIN_FLAGS
from ferlab.cli import build_parser, main


def test_version_and_models_listing(capsys):
    result = subprocess.run([sys.executable, "-m", "ferlab.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"ferlab {__version__}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cnn3_bn" in out and "baseline_cnn" in out


def test_train_evaluate_predict(tree, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tree), "--model", "baseline_cnn", "--epochs", "2", "--out", str(run),
                 "--batch-size", "32", "--augment", "medium,rotation=5", "--balance", "inverse", "optim.lr=5e-4"]) == 0
    saved = (run / "config.yaml").read_text()
    assert "0.0005" in saved and "preset: medium" in saved and "rotation: 5.0" in saved and "balance: inverse" in saved
    assert main(["evaluate", "--model", str(run), "--data", str(tree), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["samples"] == 30
    assert main(["predict", "--model", str(run / "model.safetensors"), str(tree / "test"), "--out",
                 str(tmp_path / "pred"), "--detector", "none"]) == 0
    assert "30 faces in 30 images (0 without a face" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter importing torch: some 7 s of the default tier's 3 minutes
def test_expected_errors_exit_non_zero_without_traceback(tree, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ferlab.cli", "evaluate", "--model", str(tmp_path), "--data", str(tree),
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "ferlab evaluate: error:" in result.stderr and "model.safetensors is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_stats_split_and_preview(tree, tmp_path, capsys):
    assert main(["data", "stats", str(tree), "--out", str(tmp_path / "stats")]) == 0
    assert "imbalance" in capsys.readouterr().out
    assert (tmp_path / "stats" / "class_counts.png").is_file() and (tmp_path / "stats" / "samples.png").is_file()
    assert main(["data", "split", str(tree), "--ratios", "70/10/20", "--merge", "angry=neutral", "--subsample", "90",
                 "--out", str(tmp_path / "split"), "--format", "csv"]) == 0
    manifest = (tmp_path / "split" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 91 and not any(",neutral," in line for line in manifest)
    assert main(["data", "split", str(tree), "--kfold", "3", "--out", str(tmp_path / "folds")]) == 0
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["fold0", "fold1", "fold2"]
    assert main(["data", "preview", str(tree), "--augment", "heavy", "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").is_file()


def test_data_commands_name_bad_options(tree, tmp_path, capsys):
    assert main(["data", "split", str(tree), "--ratios", "70/abc", "--out", str(tmp_path / "s")]) == 2
    assert main(["data", "split", str(tree), "--merge", "angry", "--out", str(tmp_path / "s")]) == 2
    assert main(["data", "preview", str(tree), "--augment", "light,spin=2"]) == 2
    err = capsys.readouterr().err
    assert "split ratios" in err and "--merge takes TARGET=CLASS" in err and "unknown augmentation knob 'spin'" in err
    assert not (tmp_path / "s").exists()


def test_data_scan_clean_restore(tmp_path, capsys):
    from tests.data.test_scan import make_planted_tree

    faces = make_planted_tree(tmp_path / "faces")
    before = {p: p.read_bytes() for p in faces.rglob("*") if p.is_file()}
    assert main(["data", "scan", str(faces), "--out", str(tmp_path / "scan")]) == 0
    out = capsys.readouterr().out
    assert "leak" in out and "z_copy_of_test.png" in out
    assert json.loads((tmp_path / "scan" / "scan.json").read_text())["counts"]["truncated"] == 1
    assert main(["data", "clean", str(faces), "--quarantine", str(tmp_path / "q"),
                 "--report", str(tmp_path / "scan"), "--kinds", "leak,truncated"]) == 0
    assert "moved 2 files" in capsys.readouterr().out
    assert not (faces / "train/happy/z_copy_of_test.png").exists()
    assert main(["data", "restore", str(tmp_path / "q")]) == 0
    assert before == {p: p.read_bytes() for p in faces.rglob("*") if p.is_file()}
    assert main(["data", "clean", str(faces), "--quarantine", str(faces / "q")]) == 2
    assert "inside" in capsys.readouterr().err


def test_models_listing_details_and_close_matches(capsys):
    assert main(["models", "cnn*"]) == 0
    out = capsys.readouterr().out
    assert "1,274,823" in out and "48x48 x1" in out and "resnet50" not in out
    assert main(["models", "mini_xception"]) == 0
    out = capsys.readouterr().out
    assert "SeparableConv" in out or "Conv2d" in out
    assert "56,951 (56,951 trainable)" in out
    assert main(["models", "resnt50"]) == 2
    assert "did you mean resnet50" in capsys.readouterr().err


def test_ensemble_command(trained_run, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", str(trained_run), str(trained_run), "--weights", "0.7,0.3", "--out", str(out)]) == 0
    assert json.loads((out / "model.json").read_text())["architecture"] == "ensemble"
    assert main(["ensemble", str(trained_run), "--weights", "1,2", "--out", str(tmp_path / "bad")]) == 2
    assert "weights" in capsys.readouterr().err


def test_train_resume_flag_names_a_folder_that_cannot_be_resumed(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "cannot resume" in capsys.readouterr().err


@pytest.mark.slow  # trains a grid and a study: some 4 s
def test_compare_and_tune_commands(tree, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  optim.name: [adam, sgd]\nseeds: [0]\n")
    assert main(["compare", str(grid), "epochs=1", "--data", str(tree), "--out", str(tmp_path / "cmp")]) == 0
    assert "| adam" in capsys.readouterr().out and (tmp_path / "cmp" / "curves.png").is_file()
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n")
    assert main(["tune", "--space", str(space), "--data", str(tree), "--out", str(tmp_path / "tune"), "--trials", "2",
                 "--epochs", "1", "model.name=baseline_cnn"]) == 0
    assert "best" in capsys.readouterr().out and (tmp_path / "tune" / "best.yaml").is_file()


def test_calibrate_and_predict_with_test_time_augmentation(trained_run, tree, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(trained_run / name, model)
    assert main(["calibrate", "--model", str(model), "--data", str(tree), "--out", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert f"temperature {report['temperature_before']:.3f} -> {report['temperature']:.3f}" in out
    assert f"ECE {report['ece']['before']:.4f} -> {report['ece']['after']:.4f} on 30 val images" in out
    assert main(["calibrate", "--model", str(model), "--data", str(tree), "--split", "holdout"]) == 2
    assert "no 'holdout' split" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), str(tree / "test" / "happy"), "--out", str(tmp_path / "pred"),
                 "--tta", "tencrop"]) == 0
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text())["tta"] == "tencrop"
    with pytest.raises(SystemExit):
        main(["predict", "--model", str(model), str(tree), "--out", str(tmp_path / "p2"), "--tta", "rotate"])


def test_data_scan_names_its_report_without_a_double_slash(samples, tmp_path, capsys):
    from tests.synthetic import write_tree

    faces = write_tree(samples[::30], tmp_path / "faces", split=False)
    assert main(["data", "scan", str(faces), "--out", f"{tmp_path / 'scan'}/"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "scan" / "scan.json") in out and "//" not in out


@pytest.mark.parametrize(("stored", "said"), [(0.5, "kept the stored one, the fit did not lower NLL"),
                                              (5.0, "kept the fitted one")])
def test_calibrate_says_which_temperature_it_kept_with_nll_and_ece(trained_run, tree, tmp_path, capsys, stored, said):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(trained_run / "model.safetensors", model)
    meta = json.loads((trained_run / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**meta, "temperature": stored}))
    assert main(["calibrate", "--model", str(model), "--data", str(tree)]) == 0
    out = capsys.readouterr().out
    assert f"(fitted 1.000: {said}): NLL " in out and ", ECE " in out, out


@pytest.mark.hostile
def test_export_refuses_an_unrelated_out_file_unless_forced(trained_run, tmp_path, capsys):
    mine = tmp_path / "notes.onnx"
    mine.write_text("mine")
    export = ["export", "--model", str(trained_run), "--out", str(mine)]
    assert main(export) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a ferlab ONNX export" in err and "--force" in err, err
    assert mine.read_text() == "mine"
    assert main([*export, "--force"]) == 0 and mine.read_bytes()[:4] != b"mine"


def test_evaluate_defaults_to_the_bundled_model_and_takes_a_detector(tree, tmp_path, capsys):
    """No --model: the bundled fast model, as predict does; --detector on crops that hold no findable face is a clear
    error, and --margin without a detector is refused."""
    assert main(["evaluate", "--data", str(tree), "--out", str(tmp_path / "e"), "--split", "test"]) == 0
    assert "30 faces: accuracy" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["model"] == "fast" and len(metrics["classes"]) == 7
    assert main(["evaluate", "--data", str(tree), "--out", str(tmp_path / "h"), "--split", "test",
                 "--detector", "haar"]) == 2
    assert "found no face in any of its 30 photos" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tree), "--out", str(tmp_path / "m"), "--margin", "0.1"]) == 2
    assert "margin applies to faces found by a detector" in capsys.readouterr().err


def _subcommands(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def test_every_subcommand_help_shows_examples_of_itself():
    from ferlab.cli import build_parser

    for path, sub in _subcommands(build_parser()):
        text = sub.format_help()
        assert "examples:" in text or "example" in text, path
        if path != ("data",):
            assert f"ferlab {' '.join(path)}" in text.split("example", 1)[1], path


def test_a_mistyped_input_fails_before_the_model_is_loaded(tmp_path, capsys, monkeypatch):
    import importlib

    from ferlab.inference import recognizer

    evaluate_module = importlib.import_module("ferlab.evaluation.evaluate")  # the module, not its function

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(recognizer, "Recognizer", never)  # what `ferlab predict` imports
    monkeypatch.setattr(evaluate_module, "load_classifier", never)
    assert main(["predict", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "pred")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "eval")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_train_flags_and_config_fields_cannot_drift():
    """Every `ferlab train` flag sets a real config key (or is one of the few that are not config keys)."""
    import dataclasses
    import typing

    from ferlab.training import TrainConfig

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    dests = {a.dest for a in commands.choices["train"]._actions} - {"help", "config", "resume", "overrides", "augment"}
    assert dests == set(TRAIN_FLAGS)
    for key in TRAIN_FLAGS.values():
        owner = TrainConfig
        for part in key.split("."):
            fields = {f.name: f for f in dataclasses.fields(owner)}
            assert part in fields, f"{key}: {owner.__name__} has no field {part}"
            owner = typing.get_type_hints(owner)[part]


def on_a_terminal(args):
    """Run ``ferlab ARGS`` with its stderr on a pseudo-terminal, as in a user's shell; (exit code, what it showed)."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    shown = bytearray()

    def read():
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done = subprocess.run([sys.executable, "-c", "import sys; from ferlab.cli import main; sys.exit(main())", *args],
                          stdout=subprocess.DEVNULL, stderr=follower, timeout=300)
    os.close(follower)
    reader.join(10)
    os.close(leader)
    return done.returncode, shown.decode(errors="replace")


@pytest.mark.parametrize("command", ["predict", pytest.param("evaluate", marks=pytest.mark.slow), "scan", "video"])
def test_long_commands_show_a_progress_bar_on_a_terminal_only(command, tree, tmp_path):
    """Item 9 of the newcomer's list: a tqdm bar on a terminal, nothing of it when stderr is a pipe or file."""
    from tests.inference.test_video import SIZE, write_video

    clip = write_video(tmp_path / "clip.mp4", [np.full((SIZE[1], SIZE[0], 3), 10 * i, np.uint8) for i in range(20)])

    def args(out):
        return {
            "predict": ["predict", str(tree), "--detector", "none", "--out", str(out)],
            "evaluate": ["evaluate", "--data", str(tree), "--out", str(out)],
            "scan": ["data", "scan", str(tree), "--out", str(out)],
            "video": ["video", str(clip), "--detector", "none", "--out", str(out)],
        }[command]

    code, shown = on_a_terminal(args(tmp_path / "terminal"))
    assert code == 0, shown
    assert "%|" in shown, shown[-2000:]  # tqdm's bar
    piped = subprocess.run([sys.executable, "-c", "import sys; from ferlab.cli import main; sys.exit(main())",
                            *args(tmp_path / "piped")], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "%|" not in piped.stderr
