import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.data import ImageDataset, Preprocessing, open_dataset
from ferlab.errors import FerlabError
from tests.synthetic import CLASSES, write_tree


def _content(table):
    """(split, label, pixel digest) of every sample, order-free."""
    return sorted(
        (s.split, s.label, hashlib.sha1(np.asarray(table.read_image(s).convert("L")).tobytes()).hexdigest())
        for s in table.samples
    )


def test_every_source_reads_the_same_samples(tree, zip_tree, fer_csv, samples):
    tables = [open_dataset(tree), open_dataset(zip_tree), open_dataset(fer_csv)]
    assert all(len(t) == len(samples) for t in tables)
    assert _content(tables[0]) == _content(tables[1]) == _content(tables[2])
    assert tables[0].split_counts() == {"train": 120, "val": 30, "test": 30}
    assert tables[0].classes() == list(CLASSES)


def test_zip_sources_name_the_member(zip_tree):
    sample = open_dataset(zip_tree).samples[0]
    assert sample.source.startswith(f"{zip_tree}:dataset/")


def test_unsplit_tree_has_no_splits(samples, tmp_path):
    table = open_dataset(write_tree(samples[:30], tmp_path, split=False))
    assert table.splits() == [""] and len(table) == 30


def test_folder_names_in_any_case_and_synonyms(tmp_path):
    for folder in ("Happiness", "ANGER", "Neutral"):
        (tmp_path / folder).mkdir()
        Image.new("L", (48, 48)).save(tmp_path / folder / "a.png")
    assert open_dataset(tmp_path).classes() == ["angry", "happy", "neutral"]


def test_split_folder_aliases(tmp_path):
    for split in ("training", "validation", "testing"):
        (tmp_path / split / "happy").mkdir(parents=True)
        Image.new("L", (48, 48)).save(tmp_path / split / "happy" / "a.png")
    assert open_dataset(tmp_path).splits() == ["train", "val", "test"]


def test_missing_path(tmp_path):
    with pytest.raises(FerlabError, match="no such file or folder"):
        open_dataset(tmp_path / "nope")


def test_unknown_class_folder_is_named(tree, tmp_path):
    copy = shutil.copytree(tree, tmp_path / "t")
    (copy / "train" / "bored").mkdir()
    with pytest.raises(FerlabError, match=r"unknown class folder .*train/bored"):
        open_dataset(copy)


def test_empty_class_folder_is_named(tree, tmp_path):
    copy = shutil.copytree(tree, tmp_path / "t")
    (copy / "val" / "sad").mkdir()
    (copy / "val" / "sad" / "notes.txt").write_text("not an image")
    with pytest.raises(FerlabError, match=r"class folder .*val/sad holds no images"):
        open_dataset(copy)


def test_unreadable_image_is_skipped_with_a_warning_naming_it_and_left_alone(tree, tmp_path, caplog):
    copy = shutil.copytree(tree, tmp_path / "t")
    broken = copy / "train" / "happy" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    table = open_dataset(copy).split("train")
    data = ImageDataset(table, table.classes(), Preprocessing())
    assert data.skipped == [str(broken)]
    assert len(data) == len(data.samples) == len(data.pixels) == len(table) - 1
    assert str(broken) not in {s.source for s in data.samples}
    assert any("broken.jpg" in r.message and "cannot read image" in r.message for r in caplog.records)
    assert "skipped 1 of" in caplog.text
    assert before == {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}


def test_no_readable_image_at_all_is_an_error(tmp_path):
    folder = tmp_path / "happy"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (tmp_path / "sad").mkdir()
    (tmp_path / "sad" / "b.png").write_text("text")
    table = open_dataset(tmp_path)
    with pytest.raises(FerlabError, match="none of the 2 images could be read"):
        ImageDataset(table, table.classes(), Preprocessing())


def _csv(tmp_path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    path = tmp_path / "fer.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD = " ".join(["7"] * 4)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([f"0,{GOOD},Training", f"9,{GOOD},Training"], r"fer\.csv:row 3: emotion '9' is not a FER2013 index"),
        ([f"0,{GOOD},Training", "1,1 2 x 4,Training"], r"fer\.csv:row 3: pixels must be"),
        ([f"0,{GOOD},Training", "1,1 2 3,Training"], r"row 3: 3 pixel values do not form a square"),
        ([f"0,{GOOD},Training", "1,1 2 3 999,Training"], r"row 3: pixel values must lie in 0-255"),
        ([f"0,{GOOD},Elsewhere"], r"row 2: Usage 'Elsewhere'"),
    ],
)
def test_malformed_csv_rows_are_named(tmp_path, rows, message):
    with pytest.raises(FerlabError, match=message):
        open_dataset(_csv(tmp_path, rows))


def test_csv_without_emotion_column(tmp_path):
    with pytest.raises(FerlabError, match="no 'emotion' column"):
        open_dataset(_csv(tmp_path, [GOOD], header="pixels"))


def test_train_test_csv_variant_takes_split_from_file_name(tmp_path):
    (tmp_path / "train.csv").write_text(f"emotion,pixels\n3,{GOOD}\n0,{GOOD}\n")
    (tmp_path / "test.csv").write_text(f"emotion,pixels\n6,{GOOD}\n")
    table = open_dataset(tmp_path)
    assert table.split_counts() == {"train": 2, "test": 1}
    assert table.classes() == ["angry", "happy", "neutral"]
