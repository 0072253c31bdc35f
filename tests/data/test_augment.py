import pytest
import torch

from ferlab.data import PRESETS, AugmentConfig, batch_mixing, build_augmentation
from ferlab.data.augment import SaltAndPepper
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
    mix = batch_mixing(AugmentConfig(preset="heavy"), 3)
    images, targets = mix(torch.randn(8, 1, 48, 48), torch.randint(0, 3, (8,)))
    assert images.shape == (8, 1, 48, 48) and targets.shape == (8, 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
