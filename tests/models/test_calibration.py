"""Temperature scaling: the fit, the stored temperature, and probabilities that use it."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from ferlab.data import Preprocessing
from ferlab.errors import FerlabError
from ferlab.models import Ensemble, LoadedModel, ModelMeta, build_model, load_model, save_model
from ferlab.models.calibration import TEMPERATURE_RANGE, fit_calibration, fit_temperature
from ferlab.models.io import save_temperature
from tests.synthetic import CLASSES


def _planted(n=4000, classes=5, scale=3.0, seed=0):
    """Labels drawn from softmax(z), logits given as scale * z: the true temperature is `scale`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return scale * z, labels


def test_fit_temperature_recovers_a_planted_temperature():
    logits, labels = _planted()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, abs=0.1)
    assert fit_temperature(logits, labels) == temperature  # deterministic
    with torch.inference_mode():  # as LoadedModel's outputs come
        assert fit_temperature(logits.clone(), labels) == temperature


def test_scaling_lowers_the_error_of_an_over_confident_model():
    logits, labels = _planted(scale=4.0, seed=1)
    result = fit_calibration(logits, labels)
    assert result.temperature_before == 1.0 and result.samples == 4000
    assert result.ece_before > 0.2 and result.ece_after < 0.04  # planted: confidence far above accuracy
    assert result.nll_after < result.nll_before
    assert json.loads(json.dumps(result.to_dict()))["ece"] == {"before": result.ece_before, "after": result.ece_after}


def test_degenerate_fits_stay_in_range_and_bad_inputs_are_refused(caplog):
    wrong = torch.eye(3).repeat(4, 1) * 5  # always confidently wrong: NLL keeps falling as T grows
    assert fit_temperature(wrong, (torch.arange(12) + 1) % 3) == pytest.approx(TEMPERATURE_RANGE[1])
    assert "stopped at its bound 20" in caplog.text
    right = torch.eye(3).repeat(4, 1) * 0.1  # all correct but unsure: the NLL would fall for ever as T -> 0
    assert fit_temperature(right, torch.arange(12) % 3) == 1.0
    assert "no temperature can be fitted" in caplog.text
    with pytest.raises(FerlabError, match="at least one image"):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(FerlabError, match=r"logits \(N, classes\) and targets \(N,\)"):
        fit_temperature(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(FerlabError, match="finite"):
        fit_temperature(torch.full((2, 3), math.nan), torch.zeros(2, dtype=torch.long))


def _meta(temperature=1.0) -> ModelMeta:
    return ModelMeta("baseline_cnn", CLASSES, Preprocessing(), temperature=temperature)


def test_temperature_round_trips_and_old_files_load_as_one(tmp_path):
    meta = _meta(2.5)
    save_model(build_model(meta).eval(), meta, tmp_path)
    stored = json.loads((tmp_path / "model.json").read_text())
    assert stored["temperature"] == 2.5 and stored["format_version"] == 1
    assert load_model(tmp_path).meta == meta
    del stored["temperature"]  # as written before calibration existed
    (tmp_path / "model.json").write_text(json.dumps(stored))
    assert load_model(tmp_path).meta.temperature == 1.0


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "hot", True, None])
def test_impossible_temperatures_are_refused_naming_file_and_field(tmp_path, bad):
    meta = _meta()
    save_model(build_model(meta), meta, tmp_path)
    stored = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**stored, "temperature": bad}))
    with pytest.raises(FerlabError, match=r"model\.json: field temperature must be a positive finite number"):
        load_model(tmp_path)
    with pytest.raises(FerlabError, match="temperature"):
        _meta(bad)


def test_save_temperature_changes_only_the_temperature(tmp_path):
    meta = _meta()
    save_model(build_model(meta), meta, tmp_path)
    before = json.loads((tmp_path / "model.json").read_text())
    weights = (tmp_path / "model.safetensors").read_bytes()
    assert save_temperature(tmp_path / "model.safetensors", np.float32(1.5)) == tmp_path / "model.json"
    assert json.loads((tmp_path / "model.json").read_text()) == {**before, "temperature": 1.5}
    assert (tmp_path / "model.safetensors").read_bytes() == weights
    with pytest.raises(FerlabError, match="positive finite"):
        save_temperature(tmp_path, -2.0)
    assert load_model(tmp_path).meta.temperature == 1.5


def test_predict_proba_divides_the_logits_by_the_temperature():
    torch.manual_seed(0)
    module = build_model(_meta()).eval()
    pixels = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8)
    plain, hot = LoadedModel(module, _meta()), LoadedModel(module, _meta(2.0))
    logits = plain.predict_logits(pixels)
    np.testing.assert_array_equal(hot.predict_logits(pixels), logits)  # logits come before the temperature
    np.testing.assert_allclose(hot.predict_proba(pixels), torch.softmax(torch.from_numpy(logits) / 2, 1).numpy(),
                               rtol=1e-6)
    assert (hot.predict_proba(pixels).argmax(1) == plain.predict_proba(pixels).argmax(1)).all()
    assert not np.allclose(hot.predict_proba(pixels), plain.predict_proba(pixels), atol=1e-3)
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'mirror'"):
        plain.predict_proba(pixels, tta="mirror")


def _constant_member(probs, temperature=1.0) -> LoadedModel:
    """A member whose logits are log `probs` for every image: a zeroed Linear, the bias their log (small, so fast)."""
    linear = nn.Linear(48 * 48, len(probs))
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor(probs).log())
    return LoadedModel(nn.Sequential(nn.Flatten(), linear).eval(), _meta(temperature))


@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_a_mean_ensemble_gets_its_mean_back_then_the_temperature(tta):
    """Its logits are log mean probabilities: T=1 gives the mean, T=2 its square root renormalised."""
    members = [_constant_member([0.7, 0.2, 0.1]), _constant_member([0.1, 0.2, 0.7])]
    module = Ensemble(members, in_chans=1, input_size=48, method="mean").eval()
    prep = Preprocessing(48, 1, (0.0,), (1.0,))
    pixels = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    mean = np.array([0.4, 0.2, 0.4])
    calm = LoadedModel(module, ModelMeta("ensemble", CLASSES, prep))
    np.testing.assert_allclose(calm.predict_proba(pixels, tta=tta), np.tile(mean, (3, 1)), atol=1e-6)
    hot = LoadedModel(module, ModelMeta("ensemble", CLASSES, prep, temperature=2.0))
    expected = np.sqrt(mean) / np.sqrt(mean).sum()
    np.testing.assert_allclose(hot.predict_proba(pixels, tta=tta), np.tile(expected, (3, 1)), atol=1e-6)


def test_ensemble_members_contribute_their_calibrated_probabilities():
    prep = Preprocessing(48, 1, (0.0,), (1.0,))
    pixels = torch.randint(0, 256, (2, 1, 48, 48), dtype=torch.uint8)
    member = _constant_member([0.64, 0.32, 0.04], temperature=2.0)
    np.testing.assert_allclose(member.predict_proba(pixels)[0], np.array([0.8, 0.4 * 2**0.5, 0.2]) / (1 + 0.4 * 2**0.5),
                               rtol=1e-5)
    module = Ensemble([member, _constant_member([0.5, 0.3, 0.2])], in_chans=1, input_size=48, method="mean")
    probs = LoadedModel(module.eval(), ModelMeta("ensemble", CLASSES, prep)).predict_proba(pixels)
    np.testing.assert_allclose(probs, (member.predict_proba(pixels) + [0.5, 0.3, 0.2]) / 2, atol=1e-6)
