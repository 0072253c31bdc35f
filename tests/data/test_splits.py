import collections

import numpy as np
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


def _table(names_labels, split=""):
    from ferlab.data.samples import Sample, SampleTable

    return SampleTable([Sample(f"/data/{name}", label, split) for name, label in names_labels], lambda s: None, "t")


def _uneven_table():
    # 37 / 23 / 11 / 5 samples: shares that never divide evenly
    counts = {"angry": 37, "happy": 23, "sad": 11, "disgust": 5}
    return _table([(f"{label}_{i}.png", label) for label, n in counts.items() for i in range(n)])


@pytest.mark.parametrize("ratios", ["70/10/20", "80/20", "0.6:0.2:0.2"])
def test_ratio_split_is_stratified_within_one_sample_per_class(ratios):
    from ferlab.data import parse_ratios, ratio_split

    table = _uneven_table()
    shares = parse_ratios(ratios)
    result = ratio_split(table, shares, seed=3)
    assert len(result) == len(table)
    assert {s.source for s in result.samples} == {s.source for s in table.samples}
    for label, total in table.label_counts().items():
        for split, share in shares.items():
            got = sum(1 for s in result.samples if s.label == label and s.split == split)
            assert abs(got - share * total) < 1, (label, split, got, share * total)
    assert ratio_split(table, shares, seed=3).samples == result.samples
    assert ratio_split(table, shares, seed=4).samples != result.samples


def test_parse_ratios_rejects_nonsense():
    from ferlab.data import parse_ratios

    assert parse_ratios("80/20") == {"train": 0.8, "test": 0.2}
    for bad in ("100", "a/b", "50/-10/60", "1/1/1/1"):
        with pytest.raises(FerlabError, match="split ratios"):
            parse_ratios(bad)


@pytest.mark.parametrize(("pattern", "names", "subjects"), [
    ("ckplus", ["S010_004_00000019.png", "S125_001_00000001.png"], ["S010", "S125"]),
    ("jaffe", ["KA.AN1.39.tiff", "YM.HA2.53.tiff"], ["KA", "YM"]),
    ("kdef", ["AF01ANS.JPG", "BM23HAS.JPG"], ["F01", "M23"]),
    (r"^p(\d+)-", ["p7-smile.jpg", "p12-frown.jpg"], ["7", "12"]),
])
def test_subject_ids_from_file_names(pattern, names, subjects):
    from ferlab.data import subject_ids

    table = _table([(name, "happy") for name in names])
    assert subject_ids(table.samples, pattern) == subjects


def test_subject_pattern_that_does_not_match_names_the_file():
    from ferlab.data import subject_ids

    with pytest.raises(FerlabError, match="odd.png"):
        subject_ids(_table([("S010_1.png", "sad"), ("odd.png", "sad")]).samples, "ckplus")


def _subject_table():
    """CK+-style names: 20 subjects with 2-9 images each over three classes."""
    rng = np.random.default_rng(0)
    labels = ("angry", "happy", "sad")
    return _table([
        (f"S{subject:03d}_{i:03d}_0001.png", labels[(subject + i) % 3])
        for subject in range(20)
        for i in range(int(rng.integers(2, 10)))
    ])


def test_group_split_keeps_each_subject_in_one_split():
    from ferlab.data import ratio_split, subject_ids

    table = _subject_table()
    result = ratio_split(table, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1, groups="ckplus")
    splits_of = collections.defaultdict(set)
    for subject, sample in zip(subject_ids(result.samples, "ckplus"), result.samples):
        splits_of[subject].add(sample.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert set(result.splits()) == {"train", "val", "test"}
    counts = result.split_counts()
    assert abs(counts["train"] / len(table) - 0.7) < 0.15


@pytest.mark.parametrize("groups", [None, "ckplus"])
def test_kfold_puts_every_sample_in_exactly_one_validation_fold(groups):
    from ferlab.data import kfold_splits, subject_ids

    table = _subject_table()
    folds = kfold_splits(table, 4, seed=0, groups=groups)
    assert len(folds) == 4
    seen = collections.Counter(s.source for fold in folds for s in fold.samples if s.split == "val")
    assert set(seen) == {s.source for s in table.samples} and set(seen.values()) == {1}
    if groups:
        for fold in folds:
            ids = subject_ids(fold.samples, groups)
            val = {i for i, s in zip(ids, fold.samples) if s.split == "val"}
            train = {i for i, s in zip(ids, fold.samples) if s.split == "train"}
            assert not val & train


def test_subsample_keeps_class_shares():
    from ferlab.data import subsample

    table = _uneven_table()  # 76 samples
    small = subsample(table, 38, seed=0)
    assert len(small) == 38
    for label, total in table.label_counts().items():
        assert abs(small.label_counts()[label] - total / 2) <= 1
    assert {s.source for s in small.samples} <= {s.source for s in table.samples}
    with pytest.raises(FerlabError, match="cannot subsample"):
        subsample(table, 1000)


def test_merge_classes():
    from ferlab.data import merge_classes

    merged = merge_classes(_uneven_table(), {"Anger": ["disgust"]})
    assert merged.label_counts() == {"angry": 42, "happy": 23, "sad": 11}
    with pytest.raises(FerlabError, match="fear"):
        merge_classes(_uneven_table(), {"angry": ["fear"]})
