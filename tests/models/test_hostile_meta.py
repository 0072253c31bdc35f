"""Hostile or damaged model.json files: each refused in one line naming the file and field, never NaN probabilities."""

import json

import numpy as np
import pytest
import torch

from ferlab.data import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models import ModelMeta, build_model, load_model, save_model
from tests.synthetic import CLASSES

pytestmark = pytest.mark.hostile


@pytest.fixture
def saved(tmp_path):
    meta = ModelMeta("baseline_cnn", CLASSES, Preprocessing(), {"hidden": 32})
    torch.manual_seed(0)
    save_model(build_model(meta).eval(), meta, tmp_path / "m")
    return tmp_path / "m"


def _edit(folder, change):
    path = folder / "model.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["preprocessing"].update(input_size=100_000), "input_size must lie in 1..1024"),
    (lambda d: d["preprocessing"].update(input_size=0), "input_size must lie in 1..1024"),
    (lambda d: d["preprocessing"].update(std=[0.0]), "std finite and positive"),
    (lambda d: d["preprocessing"].update(mean=[float("nan")]), "mean must be finite"),
    (lambda d: d.update(temperature=1e-300), "temperature must be a positive finite number in"),
    (lambda d: d.update(temperature=float("nan")), "temperature must be a positive finite number in"),
    (lambda d: d["model_kwargs"].update(hidden=10**7), "tensors differ"),  # refused by shapes, nothing allocated
    (lambda d: d["model_kwargs"].update(hidden=-5), "cannot build baseline_cnn with model_kwargs"),
    (lambda d: d.update(framing={"yunet": {"margin": -2}}), "margin"),
])
def test_hostile_metadata_is_refused_naming_the_field(saved, change, message):
    _edit(saved, change)
    with pytest.raises(FerlabError, match=message) as caught:
        load_model(saved)
    assert str(saved / "model.json") in str(caught.value) and "\n" not in str(caught.value)


def test_deeply_nested_json_is_refused(saved):
    (saved / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FerlabError, match="nested too deeply"):
        load_model(saved)


def test_an_ensemble_listing_itself_is_refused(saved):
    from ferlab.models.ensemble import save_ensemble

    ensemble = save_ensemble([saved], saved.parent / "ens").parent
    _edit(ensemble, lambda d: d["model_kwargs"].update(members=[str(ensemble)]))
    with pytest.raises(FerlabError, match="contains itself"):
        load_model(ensemble)


def test_valid_metadata_still_gives_finite_probabilities(saved):
    probs = load_model(saved).predict_proba(torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8))
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1)
