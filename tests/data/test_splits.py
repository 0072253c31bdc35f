import collections

import pytest

from ferlab.data import open_dataset, prepare_splits
from ferlab.errors import FerlabError
from tests.synthetic import write_tree


def _ids(table, split):
    return {s.source for s in table.samples if s.split == split}


def test_unsplit_data_is_split_stratified_and_reproducibly(samples, tmp_path):
    table = open_dataset(write_tree(samples, tmp_path, split=False))  # 60 per class
    first = prepare_splits(table, 0.2, 0.1, seed=1)
    assert prepare_splits(table, 0.2, 0.1, seed=1).samples == first.samples
    assert prepare_splits(table, 0.2, 0.1, seed=2).samples != first.samples
    for split, per_class in (("train", 42), ("val", 12), ("test", 6)):
        counts = collections.Counter(s.label for s in first.samples if s.split == split)
        assert set(counts.values()) == {per_class}, (split, counts)
    train, val, test = (_ids(first, s) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == len(table)


def test_val_is_carved_from_train_when_missing(samples, tmp_path):
    tree = write_tree([s for s in samples if s[0] != "val"], tmp_path)
    table = prepare_splits(open_dataset(tree), 0.25, 0.1, seed=0)
    assert table.split_counts() == {"train": 90, "val": 30, "test": 30}


def test_given_splits_are_kept(tree):
    table = open_dataset(tree)
    assert prepare_splits(table, 0.1, 0.1, seed=0).samples == table.samples


def test_no_training_split(samples, tmp_path):
    tree = write_tree([s for s in samples if s[0] == "test"], tmp_path)
    with pytest.raises(FerlabError, match="no training split"):
        prepare_splits(open_dataset(tree), 0.1, 0.1, seed=0)
