"""The training-data sketch: exact for small sets, an estimate for large ones, stored safely in model.json."""

import numpy as np
import pytest

from ferlab.data.fingerprint import SKETCH_SIZE, DataSketch, pixel_hashes
from ferlab.errors import FerlabError


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def test_small_sets_are_answered_exactly():
    train = _images(100, 0)
    sketch = DataSketch.from_pixels(train)
    assert sketch.samples == 100 and sketch.shape == (1, 8, 8) and len(sketch.hashes) == 100
    assert sketch.share_of(train) == 1.0 and sketch.share_of(_images(50, 1)) == 0.0
    assert sketch.share_of(np.concatenate([train[:30], _images(70, 2)])) == pytest.approx(0.3)


def test_large_sets_are_estimated_from_the_smallest_hashes():
    train = _images(20_000, 0)
    sketch = DataSketch.from_pixels(train)
    assert len(sketch.hashes) == SKETCH_SIZE and list(sketch.hashes) == sorted(sketch.hashes)
    assert sketch.share_of(train[:4000]) == 1.0  # part of the training set: all of it was trained on
    assert sketch.share_of(_images(4000, 1)) == 0.0
    mixed = np.concatenate([train[:8000], _images(8000, 3)])
    assert 0.3 <= sketch.share_of(mixed) <= 0.7
    assert sketch.share_of(_images(20, 4)) is None  # too few images fall under the threshold to tell
    assert sketch.share_of(np.zeros((50, 3, 8, 8), dtype=np.uint8)) is None  # decoded at another shape


def test_the_sketch_round_trips_through_json_and_a_damaged_one_is_named():
    sketch = DataSketch.from_pixels(_images(300, 0))
    assert DataSketch.from_dict(sketch.to_dict(), "x") == sketch
    assert pixel_hashes(_images(3, 0)).dtype == np.uint64
    for bad in ({"samples": 3}, {"samples": 3, "shape": [1, 8], "hashes": []},
                {"samples": 3, "shape": [1, 8, 8], "hashes": ["zz"]}, "nonsense"):
        with pytest.raises(FerlabError, match="field training_data is not a data sketch"):
            DataSketch.from_dict(bad, "field training_data")
