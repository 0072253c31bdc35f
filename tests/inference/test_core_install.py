"""The inference install (``pip install ferlab``, no extras): predict and recognise with no torch in the process.

Each check runs in a fresh interpreter whose heavy packages are hidden (``sys.modules[name] = None``
makes their import fail and `importlib.util.find_spec` report them missing), as on a core install.
"""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from ferlab.models import load_model
from ferlab.models.onnx import generated_pixels

#: What `ferlab[train]` and `ferlab[serve]` add; none of it may load on the core path. (PyYAML is declared by
#: the train extra but is in every install: supervision requires it, and matplotlib.)
EXTRAS = ("torch", "torchvision", "timm", "lightning", "torchmetrics", "sklearn", "optuna", "cleanlab", "captum",
          "onnx", "onnxscript", "safetensors", "pandas", "gradio", "fastapi", "omegaconf")


def run_core(code: str, *args: str) -> subprocess.CompletedProcess:
    hide = "".join(f"sys.modules[{name!r}] = None\n" for name in EXTRAS)
    script = f"import sys\n{hide}{textwrap.dedent(code)}"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["fast", "accurate"])
def test_the_bundled_models_give_the_torch_probabilities_without_torch(name, tmp_path):
    prep = load_model(name).meta.preprocessing
    pixels = generated_pixels(prep, 32).numpy()
    np.save(tmp_path / "pixels.npy", pixels)
    done = run_core("""
        import numpy as np
        from ferlab.inference.recognizer import Recognizer
        recognizer = Recognizer(sys.argv[1], "none")
        assert recognizer.backend == "onnx"
        np.save(sys.argv[2], recognizer.model.predict_proba(np.load(sys.argv[3])))
    """, name, str(tmp_path / "probs.npy"), str(tmp_path / "pixels.npy"))
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"), load_model(name).predict_proba(pixels), atol=1e-5)


def test_cli_predict_runs_on_the_core_install(tmp_path):
    Image.new("L", (48, 48), 128).save(tmp_path / "face.png")
    done = run_core("""
        from ferlab.cli import main
        code = main(["predict", sys.argv[1], "--detector", "none", "--json"])
        heavy = sorted(n for n in sys.modules if n.split(".")[0] in ("torch", "timm", "lightning") and sys.modules[n])
        assert not heavy, heavy
        sys.exit(code)
    """, str(tmp_path / "face.png"))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["backend"] == "onnx" and len(data["predictions"]) == 1


def test_annotated_pictures_and_video_run_on_the_core_install(tmp_path):
    from tests.inference.test_video import av_video

    clip = av_video(tmp_path / "clip.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 6)
    done = run_core("""
        import numpy as np
        from ferlab.cli import main
        from ferlab.inference import Recognizer, annotate
        recognizer = Recognizer("fast", "none")
        image = np.full((120, 160, 3), 90, np.uint8)
        drawn = annotate(image, recognizer.recognize(image), recognizer.classes)
        assert drawn.shape == image.shape and (drawn != image).any()
        sys.exit(main(["video", sys.argv[1], "--detector", "none", "--out", sys.argv[2]]))
    """, str(clip), str(tmp_path / "video"))
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "video").iterdir()}
    assert {"annotated.mp4", "emotions.png", "segments.csv"} <= written, written


def test_a_run_without_model_onnx_says_how_to_do_without_torch(trained_run, tree, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("model.onnx"))
    done = run_core("""
        from ferlab.cli import main
        sys.exit(main(["predict", sys.argv[1], "--model", sys.argv[2], "--detector", "none"]))
    """, str(next((tree / "val" / "happy").iterdir())), str(run))
    assert done.returncode != 0
    assert "needs PyTorch, which this install lacks" in done.stderr and "pip install 'ferlab[train]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_command_that_needs_an_extra_names_it():
    done = run_core("""
        from ferlab.cli import main
        sys.exit(main(["train", "--data", "faces/", "--out", "runs/x"]))
    """)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "from the train extra, which is not installed: pip install 'ferlab[train]'" in done.stderr


def test_cli_models_lists_the_architectures_and_bundled_models_on_the_core_install():
    """`ferlab models` reads the shipped catalog: the full listing with parameter counts, and no torch to import."""
    done = run_core("""
        from ferlab.cli import main
        sys.exit(main(["models"]))
    """)
    assert done.returncode == 0, done.stderr
    assert "cnn3_bn             1,274,823   48x48 x1" in done.stdout and "resnet50           23,522,375  224x224x3" in done.stdout
    assert "fast: real-time CNN for CPUs" in done.stdout
