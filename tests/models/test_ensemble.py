"""Ensembles: mean, vote and stacking over saved models, mixed member inputs, storage and errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from ferlab.data import ImageDataset, Preprocessing, open_dataset, to_pixels
from ferlab.data.framing import Framing
from ferlab.data.transforms import normalize
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, ModelMeta, build_model, load_model, save_model
from tests.synthetic import CLASSES, make_samples

ENSEMBLE_PREP = Preprocessing(48, 1, (0.0,), (1.0,))
GRAY48 = Preprocessing()  # the CNNs' default: 48x48 grayscale, mean 0.5, std 0.5
RGB64 = Preprocessing(64, 3, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def ens():
    """`ferlab.models.ensemble`, imported here rather than at collection: registered before test_models.py is
    collected, "ensemble" would join its every-model parametrisation, which builds models without members."""
    from ferlab.models import ensemble

    return ensemble


def _save(directory, arch="baseline_cnn", prep=GRAY48, seed=0, classes=CLASSES, framing=None):
    """A member with random weights, saved into `directory`."""
    torch.manual_seed(seed)
    meta = ModelMeta(arch, tuple(classes), prep, framing=framing or {})
    save_model(build_model(meta).eval(), meta, directory)
    return directory


def _constant(directory, probs):
    """A member that predicts `probs` for every image: its last Linear zeroed, the bias their log."""
    meta = ModelMeta("baseline_cnn", CLASSES, Preprocessing())
    model = build_model(meta).eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(probs).log())
    save_model(model, meta, directory)
    return directory


def _test_pixels(tree, prep=GRAY48) -> torch.Tensor:
    return ImageDataset(open_dataset(tree).split("test"), CLASSES, prep).pixels  # (30, C, S, S) uint8


def _member_probs(ensemble: LoadedModel, pixels: torch.Tensor) -> np.ndarray:
    """Each member's probabilities inside the ensemble: (members, N, classes)."""
    with torch.inference_mode():
        return torch.softmax(ensemble.module.member_logits(normalize(pixels, ensemble.meta.preprocessing)), 2).numpy()


def test_mean_ensemble_averages_member_probabilities(ens, trained_run, tree, tmp_path):
    other = _save(tmp_path / "b")
    pixels = _test_pixels(tree)
    pa, pb = load_model(trained_run).predict_proba(pixels), load_model(other).predict_proba(pixels)
    save_ensemble = ens.save_ensemble
    save_ensemble([trained_run, other], tmp_path / "mean")
    save_ensemble([trained_run, other], tmp_path / "weighted", weights=[3, 1])
    mean, weighted = load_model(tmp_path / "mean"), load_model(tmp_path / "weighted")
    assert mean.meta.preprocessing == ENSEMBLE_PREP and mean.classes == CLASSES
    np.testing.assert_allclose(mean.predict_proba(pixels), (pa + pb) / 2, rtol=0, atol=1e-5)
    np.testing.assert_allclose(weighted.predict_proba(pixels), 0.75 * pa + 0.25 * pb, rtol=0, atol=1e-5)

    built = ens.ensemble(num_classes=3, in_chans=1, input_size=48, members=[trained_run, other], weights=[3, 1])
    in_memory = LoadedModel(built.eval(), weighted.meta)
    np.testing.assert_array_equal(weighted.predict_proba(pixels), in_memory.predict_proba(pixels))


def test_saved_ensemble_stores_member_metadata_and_needs_no_member_files(ens, tmp_path):
    members = [_save(tmp_path / "a", seed=1), _save(tmp_path / "b", "cnn3_bn", seed=2)]
    weights_path = ens.save_ensemble(members, tmp_path / "ens", method="vote")
    assert weights_path == tmp_path / "ens" / "model.safetensors"
    pixels = torch.randint(0, 256, (6, 1, 48, 48), dtype=torch.uint8)
    before = load_model(tmp_path / "ens").predict_proba(pixels)
    kwargs = json.loads((tmp_path / "ens" / "model.json").read_text())["model_kwargs"]
    assert [m["architecture"] for m in kwargs["members"]] == ["baseline_cnn", "cnn3_bn"]
    assert kwargs["method"] == "vote" and kwargs["weights"] is None
    assert {k.split(".")[1] for k in load_file(str(weights_path))} == {"0", "1"}  # members.0.*, members.1.*
    for member in members:
        shutil.rmtree(member)
    np.testing.assert_array_equal(load_model(tmp_path / "ens").predict_proba(pixels), before)


def test_vote_follows_the_weighted_majority_not_the_mean(ens, tmp_path):
    leaning = [_constant(tmp_path / name, [0.40, 0.35, 0.25]) for name in ("a", "b")]  # angry, barely
    sure = _constant(tmp_path / "c", [0.01, 0.98, 0.01])  # happy, clearly
    pixels = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)

    def winner(name, *args, **kwargs):
        ens.save_ensemble(*args, tmp_path / name, **kwargs)
        probs = load_model(tmp_path / name).predict_proba(pixels)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
        assert len(set(probs.argmax(1))) == 1
        return CLASSES[probs[0].argmax()], probs[0]

    assert winner("mean", [*leaning, sure])[0] == "happy"
    label, probs = winner("vote", [*leaning, sure], method="vote")
    assert label == "angry"
    np.testing.assert_allclose(probs, [2 / 3, 1 / 3, 0], atol=1e-3)  # the vote shares
    assert winner("heavy", [*leaning, sure], method="vote", weights=[1, 1, 3])[0] == "happy"
    # 2 against 2 and 1 against 1 are ties: the mean probability, which favours happy, decides.
    assert winner("tie", [*leaning, sure], method="vote", weights=[1, 1, 2])[0] == "happy"
    assert winner("pair", [leaning[0], sure], method="vote")[0] == "happy"


def test_vote_matches_member_argmaxes_on_real_predictions(ens, trained_run, tree, tmp_path):
    members = [trained_run, _save(tmp_path / "b", seed=3), _save(tmp_path / "c", "cnn3_bn", seed=4)]
    pixels = _test_pixels(tree)
    probs = np.stack([load_model(m).predict_proba(pixels) for m in members])  # (3, N, K)
    weights = np.array([1.0, 1.0, 1.0]) / 3
    votes = (np.eye(3)[probs.argmax(2)] * weights[:, None, None]).sum(0)  # (N, K)
    mean = (probs * weights[:, None, None]).sum(0)
    expected = np.where(np.isclose(votes, votes.max(1, keepdims=True)), mean, -1).argmax(1)
    ens.save_ensemble(members, tmp_path / "vote", method="vote")
    np.testing.assert_array_equal(load_model(tmp_path / "vote").predict_proba(pixels).argmax(1), expected)


def test_members_with_other_sizes_and_channels(ens, trained_run, tmp_path):
    rgb = _save(tmp_path / "rgb", "cnn3_bn", RGB64, seed=5)
    ens.save_ensemble([trained_run, rgb], tmp_path / "mixed")
    mixed = load_model(tmp_path / "mixed")
    assert mixed.meta.preprocessing == Preprocessing(64, 3, (0.0,) * 3, (1.0,) * 3)  # largest size, RGB
    images = [Image.fromarray(a) for a in np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)]
    pixels = np.stack([to_pixels(image, mixed.meta.preprocessing) for image in images])  # (5, 3, 64, 64)
    probs = mixed.predict_proba(pixels)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-6)
    inside = _member_probs(mixed, pixels)
    np.testing.assert_allclose(inside[1], load_model(rgb).predict_proba(pixels), rtol=0, atol=1e-5)
    # The grayscale 48x48 member sees what PIL gives it (luma, bilinear downscale) up to uint8 rounding.
    gray = load_model(trained_run)
    own = gray.predict_proba(np.stack([to_pixels(image, gray.meta.preprocessing) for image in images]))
    np.testing.assert_allclose(inside[0], own, rtol=0, atol=2e-3)


def test_channel_conversion_matches_pil_and_repetition(ens, trained_run, tmp_path):
    """3 -> 1 uses PIL's luma weights; 1 -> 3 repeats the gray channel; both at the member's own size."""
    gray = load_model(trained_run)
    rgb48 = load_model(_save(tmp_path / "rgb48", "cnn3_bn", Preprocessing(48, 3, (0.5,) * 3, (0.5,) * 3), seed=6))
    rgb_input = LoadedModel(ens.Ensemble([gray, rgb48], in_chans=3, input_size=48).eval(),
                            ModelMeta("ensemble", CLASSES, Preprocessing(48, 3, (0.0,) * 3, (1.0,) * 3)))
    images = [Image.fromarray(a) for a in np.random.default_rng(1).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)]
    pixels = np.stack([to_pixels(image, rgb_input.meta.preprocessing) for image in images])
    luma = np.stack([to_pixels(image, gray.meta.preprocessing) for image in images])  # PIL's convert("L")
    np.testing.assert_allclose(_member_probs(rgb_input, pixels)[0], gray.predict_proba(luma), rtol=0, atol=1e-3)

    gray_input = LoadedModel(ens.Ensemble([gray, rgb48], in_chans=1, input_size=48).eval(),
                             ModelMeta("ensemble", CLASSES, ENSEMBLE_PREP))
    np.testing.assert_allclose(_member_probs(gray_input, luma)[1], rgb48.predict_proba(np.repeat(luma, 3, axis=1)),
                               rtol=0, atol=1e-5)


def _train_batch() -> tuple[torch.Tensor, torch.Tensor]:
    train = [(label, image) for split, label, image in make_samples(seed=1) if split == "train"]
    x = torch.from_numpy(np.stack([image for _, image in train]))[:, None].float() / 255  # (120, 1, 48, 48) in [0, 1]
    return x, torch.tensor([CLASSES.index(label) for label, _ in train])


def test_stacking_trains_only_its_head_and_round_trips(ens, trained_run, tree, tmp_path):
    other = _save(tmp_path / "b", seed=7)
    kwargs = {"members": [str(trained_run), str(other)], "method": "stacking", "stack_hidden": 16}
    model = ens.ensemble(num_classes=3, in_chans=1, input_size=48, **kwargs)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith("head.") for name in trainable)
    assert model.head[0].in_features == 256 + 256  # the inputs of each member's last Linear
    model.train()
    assert model.head.training and not any(m.training for m in model.members.modules())

    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)  # all parameters, as the training loop passes them
    x, y = _train_batch()
    for _ in range(3):
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {k for k in before if k.startswith("head.")}  # members' BatchNorm statistics included

    meta = ModelMeta("ensemble", CLASSES, ENSEMBLE_PREP, kwargs)
    save_model(model.eval(), meta, tmp_path / "stack")
    loaded = load_model(tmp_path / "stack")
    assert loaded.meta.model_kwargs["members"][0]["architecture"] == "cnn3_bn"
    pixels = _test_pixels(tree, ENSEMBLE_PREP)
    np.testing.assert_array_equal(loaded.predict_proba(pixels), LoadedModel(model, meta).predict_proba(pixels))


@pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode")  # the frozen members, on purpose
def test_stacking_trains_end_to_end_with_the_usual_loop(ens, trained_run, tree, tmp_path):
    from ferlab.evaluation import evaluate
    from ferlab.training import load_config, train

    run = tmp_path / "stack"
    cfg = load_config(values={"data.path": str(tree), "out": str(run), "epochs": 3, "data.batch_size": 32,
                              "model.name": "ensemble", "model.kwargs.members": [str(trained_run)],
                              "model.kwargs.method": "stacking"})
    train(cfg)
    member = json.loads((run / "model.json").read_text())["model_kwargs"]["members"][0]
    assert member == json.loads((trained_run / "model.json").read_text())  # metadata, not a path
    saved, original = load_file(str(run / "model.safetensors")), load_file(str(trained_run / "model.safetensors"))
    assert all(torch.equal(saved[f"members.0.{k}"], v) for k, v in original.items())  # the member stayed frozen
    assert evaluate(run, tree, tmp_path / "eval").accuracy >= 0.8  # chance is 1/3


def test_errors_name_the_problem(ens, trained_run, tmp_path):
    a, b = _save(tmp_path / "a"), _save(tmp_path / "b", seed=1)
    with pytest.raises(FerlabError, match="unknown ensemble method 'median'; choose one of mean, vote, stacking"):
        ens.save_ensemble([a, b], tmp_path / "e1", method="median")
    with pytest.raises(FerlabError, match=r"expected one per member \(2\), got 3"):
        ens.save_ensemble([a, b], tmp_path / "e2", weights=[1, 1, 1])
    with pytest.raises(FerlabError, match=r"must all be positive, got \[1.0, 0.0\]"):
        ens.save_ensemble([a, b], tmp_path / "e3", weights=[1, 0])
    with pytest.raises(FerlabError, match="stacking learns its own"):
        ens.ensemble(num_classes=3, in_chans=1, input_size=48, members=[a, b], method="stacking", weights=[1, 2])
    two = _save(tmp_path / "two", classes=("angry", "happy"))
    with pytest.raises(FerlabError, match=r"member 1 \(.*two\) has classes \['angry', 'happy'\], but member 0 "
                                          r"\(.*a\) has \['angry', 'happy', 'neutral'\]"):
        ens.save_ensemble([a, two], tmp_path / "e4")
    reordered = _save(tmp_path / "reordered", classes=("happy", "angry", "neutral"))
    with pytest.raises(FerlabError, match="same classes in the same order"):
        ens.save_ensemble([a, reordered], tmp_path / "e5")
    with pytest.raises(FerlabError, match=r"ensemble of 4 classes, but its members predict 3"):
        ens.ensemble(num_classes=4, in_chans=1, input_size=48, members=[a, b])
    with pytest.raises(FerlabError, match="ensemble member 1: no model at .*nothing"):
        ens.save_ensemble([a, tmp_path / "nothing"], tmp_path / "e6")
    with pytest.raises(FerlabError, match="must be a list of model paths or metadata dicts"):
        ens.ensemble(num_classes=3, in_chans=1, input_size=48, members=str(a))
    with pytest.raises(FerlabError, match="ensemble member 0: missing field 'preprocessing'"):
        ens.ensemble(num_classes=3, in_chans=1, input_size=48, members=[{"format_version": 1, "architecture": "x"}])
    with pytest.raises(FerlabError, match="ferlab train --model ensemble .*model.kwargs.method=stacking"):
        ens.save_ensemble([a, b], tmp_path / "e7", method="stacking")
    with pytest.raises(FerlabError, match="already exists and is not empty"):
        ens.save_ensemble([a, b], a)
    assert not any((tmp_path / f"e{i}").exists() for i in range(1, 8))


def test_an_ensemble_keeps_the_framing_its_members_share(ens, tmp_path):
    tight = {"yunet": Framing(margin=0.2, scale_by="width")}
    members = [_save(tmp_path / "a", framing=tight), _save(tmp_path / "b", "cnn3_bn", seed=2, framing=tight)]
    ens.save_ensemble(members, tmp_path / "ens")
    assert load_model(tmp_path / "ens").meta.framing == tight
    other = _save(tmp_path / "c", seed=3, framing={"yunet": Framing(margin=0.5)})
    with pytest.raises(FerlabError, match="frame faces found by yunet differently"):
        ens.save_ensemble([*members, other], tmp_path / "mixed")
    assert not (tmp_path / "mixed" / "model.json").exists()
