from pathlib import Path

import pytest

from ferlab.models import model_entry
from ferlab.training import load_config
from ferlab.training.optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs" / "crop").glob("*.yaml"),
                  *(ROOT / "configs" / "finetune").glob("*.yaml")])


def test_the_classic_studies_ship():
    names = {path.stem for path in CONFIGS}
    assert {"cnn3_bn", "cnn5_leaky", "three_class", "six_class_rmsprop", "transfer_mobilenetv2", "transfer_resnet50",
            "transfer_inception_v3"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_validates(path, tmp_path):
    cfg = load_config(path, values={"data.path": "faces/", "out": str(tmp_path / "run")})
    cfg.validate()
    model_entry(cfg.model.name)
    assert cfg.optim.name in OPTIMIZERS


def test_the_crop_recipes_train_on_crops_with_their_stored_views(tmp_path):
    for path in (ROOT / "configs" / "reference-accurate.yaml", ROOT / "configs" / "crop" / "vgg_fer-half.yaml"):
        cfg = load_config(path, values={"data.path": "faces/", "out": "run"})
        assert (cfg.data.image_size, cfg.data.crop, cfg.data.tta) == (48, 40, "tencrop")
        assert (cfg.optim.name, cfg.optim.nesterov, cfg.model.kwargs["pool"]) == ("sgd", True, True)


def test_the_photo_fine_tune_starts_from_the_bundled_model_it_can_load(tmp_path):
    from ferlab.models import load_model

    cfg = load_config(ROOT / "configs" / "finetune" / "accurate-photo.yaml", values={"data.path": "faces/", "out": "run"})
    saved = load_model(cfg.model.init)
    assert (cfg.model.init, saved.meta.architecture, cfg.data.augment.preset) == ("accurate", cfg.model.name, "photo")
    assert {k: saved.meta.model_kwargs[k] for k in cfg.model.kwargs} == cfg.model.kwargs


def test_the_crop_fine_tune_builds_the_model_its_base_recipe_trains():
    """`--init` loads the base run's weights, so both recipes must build the same network and crops."""
    base = load_config(ROOT / "configs" / "reference-accurate.yaml", values={"data.path": "faces/", "out": "run"})
    tune = load_config(ROOT / "configs" / "finetune" / "accurate-photo.yaml", values={"data.path": "faces/", "out": "run"})
    assert (tune.model.name, tune.model.kwargs) == (base.model.name, base.model.kwargs)
    assert (tune.data.image_size, tune.data.crop, tune.data.framing) == (base.data.image_size, base.data.crop,
                                                                          base.data.framing)
    assert (tune.data.augment.preset, tune.data.tta, tune.optim.lr) == ("photo", "flip", base.optim.lr / 10)


def test_the_fast_distillation_starts_from_fast_and_learns_from_a_teacher_with_its_input():
    """Distillation feeds the teacher the student's batches, so `accurate` must read `fast`'s crops and framing."""
    from ferlab.models import load_model

    cfg = load_config(ROOT / "configs" / "finetune" / "fast-distill.yaml", values={"data.path": "faces/", "out": "run"})
    student, teacher = load_model(cfg.model.init), load_model(cfg.distill.teacher)
    assert (cfg.model.init, cfg.distill.teacher, student.meta.architecture) == ("fast", "accurate", cfg.model.name)
    assert {k: student.meta.model_kwargs[k] for k in cfg.model.kwargs} == cfg.model.kwargs
    assert teacher.meta.preprocessing == student.meta.preprocessing and teacher.classes == student.classes
    assert teacher.meta.framing == student.meta.framing


def test_fast_is_the_previous_fast_recipe_plus_a_teacher():
    """The figures of the two `fast` models compare only while the teacher is all that differs."""
    values = {"data.path": "faces/", "out": "run"}
    fast = load_config(ROOT / "configs" / "reference-fast.yaml", values=values)
    previous = load_config(ROOT / "configs" / "crop" / "vgg_fer-half-photo.yaml", values=values)
    assert (fast.distill.teacher, fast.distill.weight, previous.distill.teacher) == ("accurate", 0.5, None)
    previous.distill = fast.distill
    assert previous == fast
