import json

import pytest
from PIL import Image

from ferlab.data import AugmentConfig, open_dataset
from ferlab.data.export import export_tree
from ferlab.data.preview import preview_augmentation
from ferlab.data.stats import dataset_stats, write_stats
from ferlab.errors import FerlabError
from tests.synthetic import make_samples, write_tree


def test_stats_counts_imbalance_and_pictures(tmp_path):
    samples = make_samples()  # 40 train, 10 val, 10 test per class; drop half of the neutral training images
    neutral_train = [i for i, (split, label, _) in enumerate(samples) if split == "train" and label == "neutral"]
    table = open_dataset(write_tree([s for i, s in enumerate(samples) if i not in neutral_train[:20]], tmp_path / "d"))
    stats = write_stats(table, tmp_path / "out", per_class=4)
    assert stats == json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["counts"]["train"] == {"angry": 40, "happy": 40, "neutral": 20}
    assert stats["counts"]["all"]["neutral"] == 40
    assert stats["imbalance"]["train"] == 2.0 and stats["imbalance"]["val"] == 1.0
    for name in ("class_counts.png", "samples.png"):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.size[0] > 300
    assert "imbalance" in (tmp_path / "out" / "stats.txt").read_text()


def test_stats_name_a_class_missing_from_a_split(tree, tmp_path):
    table = open_dataset(tree)
    table = table.with_samples(s for s in table.samples if not (s.split == "test" and s.label == "happy"))
    assert dataset_stats(table)["missing"] == {"test": ["happy"]}


def test_augmentation_preview_is_a_picture(tree, tmp_path):
    path = preview_augmentation(open_dataset(tree), AugmentConfig.parse("heavy"), tmp_path / "p.png", images=3, variants=4)
    with Image.open(path) as image:
        assert image.size[0] > 300


def test_exported_tree_reads_back_identically(tree, zip_tree, fer_csv, tmp_path):
    for i, source in enumerate((tree, zip_tree, fer_csv)):
        table = open_dataset(source)
        out = export_tree(table, tmp_path / f"out{i}")
        again = open_dataset(out)
        assert again.split_counts() == table.split_counts()
        assert again.label_counts() == table.label_counts()
        first = sorted(table.read_image(s).tobytes() for s in table.samples)
        assert first == sorted(again.read_image(s).tobytes() for s in again.samples)
    copied = next((tmp_path / "out0" / "train" / "happy").iterdir())
    assert copied.read_bytes() == (tree / "train" / "happy" / copied.name).read_bytes()


def test_export_never_writes_into_a_non_empty_folder(tree, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(FerlabError, match="not empty"):
        export_tree(open_dataset(tree), tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
