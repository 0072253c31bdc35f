"""Test-time augmentation: the views, and what averaging over them does to a prediction."""

import numpy as np
import pytest
import torch

from ferlab.data import Preprocessing
from ferlab.data.transforms import TTA_MODES, tta_views
from ferlab.errors import FerlabError
from ferlab.models import LoadedModel, ModelMeta, build_model
from tests.synthetic import CLASSES


@pytest.mark.parametrize(("mode", "count"), [("none", 1), ("flip", 2), ("tencrop", 10)])
def test_views_keep_shape_and_dtype(mode, count):
    pixels = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    views = tta_views(pixels, mode)
    assert len(views) == count
    assert all(v.shape == pixels.shape and v.dtype == torch.uint8 for v in views)
    if mode != "tencrop":
        assert torch.equal(views[0], pixels)  # the image itself comes first


def test_flip_mirrors_and_tencrop_crops_an_upscaled_image():
    pixels = torch.arange(48 * 48, dtype=torch.int64).remainder(251).to(torch.uint8).view(1, 1, 48, 48)
    assert torch.equal(tta_views(pixels, "flip")[1], pixels.flip(-1))
    views = tta_views(pixels, "tencrop")  # from 54x54: corners tl, tr, bl, br, centre, then the same of the mirror
    assert torch.equal(views[5], views[1].flip(-1))  # top-left of the mirror is the mirrored top-right
    assert torch.equal(views[9], views[4].flip(-1))
    assert len({v.numpy().tobytes() for v in views}) == 10
    flat = torch.full((2, 1, 48, 48), 77, dtype=torch.uint8)  # antialiased resizing keeps a flat image flat
    assert all(torch.equal(v, flat) for v in tta_views(flat, "tencrop"))


def test_unknown_modes_and_shapes_are_refused():
    with pytest.raises(FerlabError, match="unknown test-time augmentation 'rotate'; choose one of none, flip, tencrop"):
        tta_views(torch.zeros(1, 1, 48, 48, dtype=torch.uint8), "rotate")
    with pytest.raises(FerlabError, match=r"square images \(B, C, S, S\), got shape \(1, 48, 40\)"):
        tta_views(torch.zeros(1, 48, 40, dtype=torch.uint8), "flip")
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
