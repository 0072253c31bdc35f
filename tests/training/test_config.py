import pytest

from ferlab.errors import FerlabError
from ferlab.training import TrainConfig, config_to_yaml, load_config
from ferlab.training.config import changed_fields


def test_yaml_then_values_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("model:\n  name: baseline_cnn\noptim:\n  lr: 0.01\nepochs: 3\n")
    cfg = load_config(path, ["optim.lr=3e-4", "data.classes=[angry,happy]"], {"data.path": "0123", "epochs": 5})
    assert isinstance(cfg, TrainConfig)
    assert (cfg.model.name, cfg.optim.lr, cfg.epochs, cfg.data.path) == ("baseline_cnn", 3e-4, 5, "0123")
    assert cfg.data.classes == ["angry", "happy"]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["data.path=x", "out=y", "model.kwargs.dropout=0.2"])
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["optim.lrr=1"], "optim.lrr"), (["epochs=many"], "epochs"), (["epochs"], "key=value")],
)
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(FerlabError, match=message):
        load_config(overrides=overrides)


def test_validate_names_the_field():
    cfg = load_config(overrides=["data.path=x", "out=y", "optim.name=adagrad"])
    with pytest.raises(FerlabError, match="optim.name"):
        cfg.validate()


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path, values={"data.path": "x", "out": "y"}).validate()


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_config_states_only_what_it_changes_of_its_base(tmp_path):
    _write(tmp_path / "recipes" / "base.yaml", "data:\n  batch_size: 32\n  crop: 40\nmodel:\n  name: vgg_fer\n"
           "  kwargs:\n    width: 0.5\n    dropout: 0.3\nepochs: 45\n")
    child = _write(tmp_path / "variants" / "child.yaml",
                   "base: ../recipes/base.yaml\nmodel:\n  kwargs:\n    dropout: 0.1\nepochs: 10\n")
    cfg = load_config(child, values={"data.path": "x", "out": "y"})
    assert (cfg.data.batch_size, cfg.data.crop, cfg.epochs) == (32, 40, 10)
    assert (cfg.model.name, cfg.model.kwargs) == ("vgg_fer", {"width": 0.5, "dropout": 0.1})


def test_a_block_naming_another_preset_or_name_replaces_the_base_block(tmp_path):
    """Plateau's factor means nothing to a cosine schedule, nor preset none's rotation to the photo preset."""
    _write(tmp_path / "base.yaml", "data:\n  augment:\n    preset: none\n    rotation: 10\n    erasing: 0.5\n"
           "schedule:\n  name: plateau\n  factor: 0.1\noptim:\n  name: sgd\n  lr: 0.05\n")
    child = _write(tmp_path / "child.yaml", "base: base.yaml\ndata:\n  augment:\n    preset: photo\n"
                   "schedule:\n  name: cosine\noptim:\n  lr: 0.01\n")
    cfg, defaults = load_config(child), load_config()
    assert cfg.data.augment.preset == "photo"
    assert (cfg.data.augment.rotation, cfg.data.augment.erasing) == (defaults.data.augment.rotation,
                                                                     defaults.data.augment.erasing)
    assert (cfg.schedule.name, cfg.schedule.factor) == ("cosine", defaults.schedule.factor)
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.01)


def test_an_empty_config_file_gives_the_defaults(tmp_path):
    assert load_config(_write(tmp_path / "empty.yaml", "")) == load_config()


def test_bases_chain_and_a_cycle_is_refused_naming_the_files(tmp_path):
    _write(tmp_path / "a.yaml", "epochs: 7\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\nseed: 3\n")
    cfg = load_config(_write(tmp_path / "c.yaml", "base: b.yaml\npatience: 2\n"))
    assert (cfg.epochs, cfg.seed, cfg.patience) == (7, 3, 2)
    _write(tmp_path / "a.yaml", "base: c.yaml\n")
    with pytest.raises(FerlabError, match=r"cycle: .*c\.yaml -> .*b\.yaml -> .*a\.yaml -> .*c\.yaml"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize(("text", "message"), [("base: gone.yaml\n", r"no such base config \(named by .*child\.yaml\)"),
                                               ("base: [a.yaml]\n", "base must be the path"),
                                               ("- epochs\n", "must hold a mapping")])
def test_a_bad_base_names_the_file_that_names_it(tmp_path, text, message):
    with pytest.raises(FerlabError, match=message):
        load_config(_write(tmp_path / "child.yaml", text))


def test_where_a_run_keeps_its_files_is_no_change_of_its_config():
    """A run resumed, or a recipe's stage reused, with its pixels cached elsewhere trains the same."""
    stored = load_config(values={"data.path": "faces/", "out": "a", "data.cache_dir": "cache"})
    wanted = load_config(values={"data.path": "faces/", "out": "b", "data.cache_dir": "elsewhere", "optim.lr": 0.5})
    assert changed_fields(stored, wanted) == ["optim.lr"]
