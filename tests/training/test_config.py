import pytest

from ferlab.errors import FerlabError
from ferlab.training import TrainConfig, config_to_yaml, load_config


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
