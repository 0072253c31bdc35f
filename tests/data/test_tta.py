"""Test-time augmentation: the views, and what averaging over them does to a prediction."""

import numpy as np
import pytest
import torch

from ferlab.data import Preprocessing
from ferlab.data.transforms import TTA_MODES, tta_views, views_per_image
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, ModelMeta, build_model
from tests.synthetic import CLASSES


@pytest.mark.parametrize(("mode", "count"), [("none", 1), ("flip", 2), ("tencrop", 10)])
def test_views_keep_shape_and_dtype(mode, count):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 40, 40), dtype=np.uint8)
    views = tta_views(pixels, mode)
    assert len(views) == count == views_per_image(mode)
    assert all(v.shape == pixels.shape and v.dtype == np.uint8 and v.flags.c_contiguous for v in views)
    if mode != "tencrop":
        np.testing.assert_array_equal(views[0], pixels)  # the image itself comes first


def test_a_torch_tensor_gets_the_views_of_its_array():
    """Training passes tensors, inference arrays: both get the same views (no torch needed for the latter)."""
    pixels = torch.randint(0, 256, (2, 1, 48, 48), dtype=torch.uint8)
    for mode in ("flip", "tencrop"):
        for got, expected in zip(tta_views(pixels, mode, 40), tta_views(pixels.numpy(), mode, 40)):
            np.testing.assert_array_equal(got, expected)


def test_flip_mirrors_and_tencrop_crops_an_upscaled_image():
    pixels = (np.arange(48 * 48) % 251).astype(np.uint8).reshape(1, 1, 48, 48)
    np.testing.assert_array_equal(tta_views(pixels, "flip")[1], pixels[..., ::-1])
    views = tta_views(pixels, "tencrop")  # from 54x54: corners tl, tr, bl, br, centre, then the same of the mirror
    np.testing.assert_array_equal(views[5], views[1][..., ::-1])  # top-left of the mirror is the mirrored top-right
    np.testing.assert_array_equal(views[9], views[4][..., ::-1])
    assert len({v.tobytes() for v in views}) == 10
    flat = np.full((2, 1, 48, 48), 77, dtype=np.uint8)  # bilinear resizing keeps a flat image flat
    assert all(np.array_equal(v, flat) for v in tta_views(flat, "tencrop"))
    rgb = np.random.default_rng(1).integers(0, 256, (1, 3, 48, 48), dtype=np.uint8)
    assert all(v.shape == (1, 3, 48, 48) for v in tta_views(rgb, "tencrop"))


def test_unknown_modes_and_shapes_are_refused():
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'rotate'; choose one of none, flip, tencrop"):
        tta_views(torch.zeros(1, 1, 48, 48, dtype=torch.uint8), "rotate")
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'rotate'"):
        views_per_image("rotate")
    with pytest.raises(FerlabError, match=r"square images \(B, C, R, R\), got shape \(1, 48, 40\)"):
        tta_views(torch.zeros(1, 48, 40, dtype=torch.uint8), "flip")
    with pytest.raises(FerlabError, match=r"square images \(B, C, R, R\) with R >= 44, got shape \(1, 1, 40, 40\)"):
        tta_views(torch.zeros(1, 1, 40, 40, dtype=torch.uint8), "none", 44)
    assert TTA_MODES == ("none", "flip", "tencrop")


def test_flip_of_a_mirror_symmetric_image_changes_nothing():
    torch.manual_seed(0)
    meta = ModelMeta("cnn3_bn", CLASSES, Preprocessing())
    model = LoadedModel(build_model(meta).eval(), meta)
    half = torch.randint(0, 256, (4, 1, 48, 24), dtype=torch.uint8)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)  # (4, 1, 48, 48)
    np.testing.assert_array_equal(model.predict_proba(symmetric, tta="flip"), model.predict_proba(symmetric))
    asymmetric = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    assert not np.array_equal(model.predict_proba(asymmetric, tta="flip"), model.predict_proba(asymmetric))


def test_a_crop_model_sees_the_centre_crop_or_ten_crops_of_its_images():
    pixels = (np.arange(48 * 48) % 251).astype(np.uint8).reshape(1, 1, 48, 48)
    (centre,) = tta_views(pixels, "none", 40)
    np.testing.assert_array_equal(centre, pixels[..., 4:44, 4:44])
    np.testing.assert_array_equal(tta_views(pixels, "flip", 40)[1], centre[..., ::-1])
    views = tta_views(pixels, "tencrop", 40)  # the 48-px image itself, not upscaled: the crops training saw
    np.testing.assert_array_equal(views[0], pixels[..., :40, :40])
    np.testing.assert_array_equal(views[3], pixels[..., 8:, 8:])
    np.testing.assert_array_equal(views[4], centre)
    np.testing.assert_array_equal(views[9], centre[..., ::-1])


def test_a_crop_model_applies_its_own_views_unless_told_otherwise():
    torch.manual_seed(0)
    prep = Preprocessing(input_size=40, resize=48)
    meta = ModelMeta("cnn3_bn", CLASSES, prep, tta="tencrop")
    model = LoadedModel(build_model(meta).eval(), meta)
    pixels = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    np.testing.assert_array_equal(model.predict_proba(pixels), model.predict_proba(pixels, tta="tencrop"))
    expected = torch.softmax(model.module(((pixels[..., 4:44, 4:44].float() / 255) - 0.5) / 0.5), dim=1).detach()
    np.testing.assert_allclose(model.predict_proba(pixels, tta="none"), expected.numpy(), atol=1e-6)
    with pytest.raises(FerlabError, match=r"pixels must be uint8 \(N, 1, 48, 48\)"):
        model.predict_proba(pixels[..., :40, :40])


def test_predictions_in_chunks_match_one_batch_in_every_mode():
    """A large input runs in chunks of at most `batch_size` views; a small one in one call: same answers."""
    torch.manual_seed(0)
    meta = ModelMeta("cnn3_bn", CLASSES, Preprocessing(input_size=40, resize=48))
    model = LoadedModel(build_model(meta).eval(), meta)
    pixels = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    for mode in TTA_MODES:
        whole = model.predict_logits(pixels, tta=mode)
        assert whole.shape == (5, len(CLASSES)) and whole.dtype == np.float32
        np.testing.assert_allclose(model.predict_logits(pixels, batch_size=3, tta=mode), whole, atol=1e-5)
        np.testing.assert_allclose(model.predict_logits(pixels[2:3], tta=mode), whole[2:3], atol=1e-5)


def test_crops_larger_than_the_image_and_unknown_stored_modes_are_refused():
    with pytest.raises(ValueError, match="crop size 50 must not exceed the image size 48"):
        Preprocessing(input_size=50, resize=48)
    with pytest.raises(FerlabError, match="field tta: unknown test-time augmentation 'rotate'"):
        ModelMeta("cnn3_bn", CLASSES, Preprocessing(), tta="rotate")
    stored = ModelMeta("cnn3_bn", CLASSES, Preprocessing(input_size=40, resize=48), tta="tencrop").to_dict()
    assert ModelMeta.from_dict(stored, "model.json").preprocessing.pixel_size == 48
    with pytest.raises(FerlabError, match="model.json: field tta: unknown test-time augmentation 'sixcrop'"):
        ModelMeta.from_dict({**stored, "tta": "sixcrop"}, "model.json")
