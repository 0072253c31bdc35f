import shutil

import torch

from ferlab.data import ImageDataset, Preprocessing, open_dataset
from ferlab.data.cache import content_key


def test_cached_pixels_equal_decoded_ones_and_skip_decoding(tree, tmp_path, monkeypatch):
    table = open_dataset(tree).split("train")
    cache = tmp_path / "cache"
    first = ImageDataset(table, table.classes(), Preprocessing(), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_decoding(sample):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(table, "read_image", no_decoding)
    second = ImageDataset(table, table.classes(), Preprocessing(), cache_dir=cache)
    assert torch.equal(first.pixels, second.pixels) and torch.equal(first.targets, second.targets)


def test_cache_key_follows_content_and_preprocessing(tree, zip_tree, fer_csv, tmp_path):
    copy = shutil.copytree(tree, tmp_path / "t")
    key = content_key(open_dataset(copy), Preprocessing())
    assert key == content_key(open_dataset(copy), Preprocessing())
    assert key != content_key(open_dataset(copy), Preprocessing(input_size=64))
    victim = next((copy / "train" / "happy").glob("*.png"))
    shutil.copy(next((copy / "train" / "angry").glob("*.png")), victim)
    assert key != content_key(open_dataset(copy), Preprocessing())
    assert content_key(open_dataset(zip_tree), Preprocessing()) is not None
    assert content_key(open_dataset(fer_csv), Preprocessing()) is not None


def test_corrupt_files_are_remembered_by_the_cache(tree, tmp_path):
    copy = shutil.copytree(tree, tmp_path / "t")
    (copy / "train" / "happy" / "bad.png").write_bytes(b"nope")
    table = open_dataset(copy).split("train")
    for _ in range(2):
        data = ImageDataset(table, table.classes(), Preprocessing(), cache_dir=tmp_path / "cache")
        assert data.skipped == [str(copy / "train" / "happy" / "bad.png")]
