import numpy as np
import torch
from PIL import Image

from ferlab.data import Preprocessing, normalize, to_pixels


def test_to_pixels_converts_mode_and_size():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    gray = to_pixels(rgb, Preprocessing(input_size=48, channels=1))
    assert gray.shape == (1, 48, 48) and gray.dtype == np.uint8
    assert to_pixels(rgb, Preprocessing().with_channels(3)).shape == (3, 48, 48)


def test_normalize_uses_mean_and_std():
    prep = Preprocessing(mean=(0.5,), std=(0.25,))
    x = normalize(torch.tensor([[[0, 255]]], dtype=torch.uint8), prep)
    assert torch.allclose(x, torch.tensor([[[-2.0, 2.0]]]))


def test_with_channels_repeats_statistics():
    prep = Preprocessing(mean=(0.4,), std=(0.2,)).with_channels(3)
    assert prep.channels == 3 and prep.mean == (0.4,) * 3 and prep.std == (0.2,) * 3
