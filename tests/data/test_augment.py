import pytest
import torch

from ferlab.data import PRESETS, AugmentConfig, batch_mixing, build_augmentation
from ferlab.data.augment import JpegArtefacts, LowResolution, RandomGamma, SaltAndPepper, describe
from ferlab.errors import FerlabError


def _image():
    torch.manual_seed(0)
    return torch.randint(30, 220, (1, 48, 48), dtype=torch.uint8)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_keep_shape_and_dtype(preset):
    transform = build_augmentation(AugmentConfig(preset=preset))
    if preset == "none":
        assert transform is None
        return
    out = transform(_image())
    assert out.shape == (1, 48, 48) and out.dtype == torch.uint8


def test_stronger_presets_change_images_more():
    image = _image().expand(3, -1, -1).contiguous()
    change = {}
    for preset in ("light", "medium", "heavy"):
        torch.manual_seed(1)
        transform = build_augmentation(AugmentConfig(preset=preset))
        change[preset] = sum((transform(image).float() - image.float()).abs().mean() for _ in range(40))
    assert change["light"] < change["medium"] < change["heavy"]


def test_knobs_override_the_preset_and_parse_from_text():
    config = AugmentConfig.parse("none,hflip=1")
    assert config.resolved()["hflip"] == 1.0 and config.resolved()["rotation"] == 0.0
    image = _image()
    assert torch.equal(build_augmentation(config)(image), image.flip(-1))
    for bad, message in (("wild", "unknown augmentation preset"), ("light,spin=3", "unknown augmentation knob 'spin'"),
                         ("light,rotation=x", "needs a number"), ("light,hflip=2", "probability")):
        with pytest.raises(FerlabError, match=message):
            AugmentConfig.parse(bad)


def test_salt_and_pepper_sets_about_the_asked_fraction_to_black_or_white():
    image = torch.full((1, 100, 100), 128, dtype=torch.uint8)
    out = SaltAndPepper(0.1)(image)
    changed = out != 128
    assert 0.08 < changed.float().mean() < 0.12
    assert set(out[changed].unique().tolist()) <= {0, 255}


def test_batch_mixing_gives_soft_targets_that_sum_to_one():
    assert batch_mixing(AugmentConfig(preset="light"), 3) is None
    mix = batch_mixing(AugmentConfig(preset="heavy", mix_prob=1.0), 3)
    images, targets = mix(torch.randn(8, 1, 48, 48), torch.randint(0, 3, (8,)))
    assert images.shape == (8, 1, 48, 48) and targets.shape == (8, 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))


def test_cutmix_is_an_alpha_and_mix_prob_the_share_of_mixed_batches():
    """The heavy preset's cutmix 1.0 is Beta(1, 1); only half its batches are mixed (it used to mix every one)."""
    values = AugmentConfig(preset="heavy").resolved()
    assert values["cutmix"] == 1.0 and values["mix_prob"] == 0.5
    mix = batch_mixing(AugmentConfig(preset="heavy"), 3)
    torch.manual_seed(0)
    mixed = sum(mix(torch.randn(4, 1, 8, 8), torch.randint(0, 3, (4,)))[1].ndim == 2 for _ in range(400))
    assert 160 < mixed < 240
    assert batch_mixing(AugmentConfig(preset="none", mixup=0.4), 3) is not None  # mixing asked for: every batch
    assert batch_mixing(AugmentConfig(preset="none", mixup=0.4, mix_prob=0.0), 3) is None
    with pytest.raises(FerlabError, match="mix_prob"):
        AugmentConfig(preset="heavy", mix_prob=1.5).resolved()
    assert "mix_prob" not in describe(AugmentConfig(preset="light"))


@pytest.mark.parametrize("channels", [1, 3])
def test_the_photo_preset_degrades_like_real_photos(channels):
    image = _image().expand(channels, -1, -1).contiguous()
    torch.manual_seed(2)
    transform = build_augmentation(AugmentConfig(preset="photo"))
    outputs = [transform(image) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == torch.uint8 for o in outputs)
    assert len({o.float().mean().item() for o in outputs}) == 20  # every draw differs
    knobs = AugmentConfig(preset="photo").resolved()
    assert {k for k in ("blur", "lowres", "jpeg", "gamma", "grayscale") if knobs[k]} == {"blur", "lowres", "jpeg", "gamma", "grayscale"}


def test_low_resolution_loses_detail_but_keeps_the_size():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 48, 48), dtype=torch.uint8)
    out = LowResolution((3.0, 3.0))(image)
    assert out.shape == image.shape
    assert out.float().std() < image.float().std() * 0.7  # white noise loses most of its contrast at a third


def test_random_gamma_darkens_or_brightens_within_its_range():
    image = torch.full((1, 10, 10), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    values = {int(RandomGamma(0.4)(image)[0, 0, 0]) for _ in range(50)}
    assert min(values) < 128 < max(values)
    low, high = 255 * (128 / 255) ** 1.4918, 255 * (128 / 255) ** 0.6703  # gamma exp(+-0.4)
    assert low - 1 <= min(values) and max(values) <= high + 1


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_artefacts_keep_shape_and_stay_close(channels):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (channels, 48, 48), dtype=torch.uint8)
    out = JpegArtefacts((30, 30))(image)
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert 0 < (out.float() - image.float()).abs().mean() < 60
