"""Splitting a sample table: ratio splits, subject-aware splits, k-fold, subsampling, class merges.

Every function returns a new table; samples are never copied or moved on disk.
"""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ferlab.data.labels import canonical_label
from ferlab.data.samples import SPLITS, Sample, SampleTable, source_file_name
from ferlab.errors import FerlabError

__all__ = [
    "GROUP_PATTERNS",
    "kfold_splits",
    "merge_classes",
    "parse_ratios",
    "prepare_splits",
    "ratio_split",
    "subject_ids",
    "subsample",
]

log = logging.getLogger(__name__)

#: Subject id in the file names of datasets with several images per person.
GROUP_PATTERNS: dict[str, str] = {
    "ckplus": r"^(S\d+)_",  # S010_004_00000019.png -> S010
    "jaffe": r"^([A-Z]{2})\.",  # KA.AN1.39.tiff -> KA
    "kdef": r"^[AB]([FM]\d{2})",  # AF01ANS.JPG -> F01 (session A/B is the same person)
}


def subject_ids(samples: Sequence[Sample], pattern: str) -> list[str]:
    """The subject of every sample, read from its file name.

    Args:
        pattern: a name in `GROUP_PATTERNS` or a regular expression searched in the
            file name; its first group (or the whole match) is the subject id.

    Raises:
        FerlabError: a bad expression, or a file name it does not match (named).
    """
    try:
        regex = re.compile(GROUP_PATTERNS.get(pattern, pattern))
    except re.error as err:
        raise FerlabError(f"bad subject pattern {pattern!r}: {err}") from None
    ids = []
    for sample in samples:
        match = regex.search(source_file_name(sample.source))
        if match is None:
            raise FerlabError(f"subject pattern {regex.pattern!r} does not match the file name of {sample.source}")
        ids.append(match.group(1) if regex.groups else match.group(0))
    return ids


def parse_ratios(text: str) -> dict[str, float]:
    """``"70/10/20"`` -> train/val/test, ``"80/20"`` -> train/test; percentages or fractions.

    Raises:
        FerlabError: not two or three positive numbers.
    """
    try:
        values = [float(v) for v in re.split(r"[/:,]", text)]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) <= 0:
        raise FerlabError(f"split ratios must be two or three positive numbers such as 70/10/20 or 80/20, got {text!r}")
    names = ("train", "val", "test") if len(values) == 3 else ("train", "test")
    return {name: value / sum(values) for name, value in zip(names, values)}


def _cut(n: int, ratios: Sequence[float]) -> list[int]:
    """Sizes of consecutive slices of `n` items: cumulative shares rounded, so each is within one of its share."""
    bounds = np.rint(np.cumsum([0.0, *ratios]) / sum(ratios) * n).astype(int)
    return list(np.diff(bounds))


def _check_ratios(ratios: Mapping[str, float]) -> None:
    unknown = set(ratios) - set(SPLITS)
    if unknown or not ratios or min(ratios.values()) <= 0:
        raise FerlabError(f"split ratios need positive shares for names among {SPLITS}, got {dict(ratios)}")


def ratio_split(
    table: SampleTable, ratios: Mapping[str, float], *, seed: int = 0, groups: str | None = None
) -> SampleTable:
    """Assign every sample to one of `ratios`' splits (any existing split is replaced).

    Without `groups` the split is stratified: within every class, each split
    gets its share to within one sample. scikit-learn splits only two ways, and
    chaining two of its splits compounds the rounding, hence the per-class cut.

    With `groups` (see `subject_ids`) whole subjects are assigned: subjects are
    shuffled and each goes to the split furthest below its target size, so no
    subject is in two splits and sizes come close to the ratios.
    """
    _check_ratios(ratios)
    names, shares = list(ratios), list(ratios.values())
    rng = np.random.default_rng(seed)
    samples = table.samples
    assigned: list[str] = [""] * len(samples)
    if groups is None:
        by_label: dict[str, list[int]] = collections.defaultdict(list)
        for i, s in enumerate(samples):
            by_label[s.label].append(i)
        for label in sorted(by_label):
            order = rng.permutation(by_label[label])
            start = 0
            for name, size in zip(names, _cut(len(order), shares)):
                for i in order[start:start + size]:
                    assigned[i] = name
                start += size
    else:
        ids = subject_ids(samples, groups)
        members: dict[str, list[int]] = collections.defaultdict(list)
        for i, subject in enumerate(ids):
            members[subject].append(i)
        subjects = sorted(members)
        if len(subjects) < len(names):
            raise FerlabError(f"{table.origin}: {len(subjects)} subjects cannot fill {len(names)} splits")
        targets = np.asarray(shares) / sum(shares) * len(samples)
        sizes = np.zeros(len(names))
        for subject in rng.permutation(subjects):
            k = int(np.argmax(targets - sizes))
            sizes[k] += len(members[subject])
            for i in members[subject]:
                assigned[i] = names[k]
    return table.with_samples(replace(s, split=name) for s, name in zip(samples, assigned))


def kfold_splits(table: SampleTable, k: int, *, seed: int = 0, groups: str | None = None) -> list[SampleTable]:
    """k copies of the table; in copy i fold i is ``val`` and the rest ``train``.

    Stratified (scikit-learn's StratifiedKFold), or stratified and grouped
    (StratifiedGroupKFold) so that a subject's images share one fold.
    """
    if k < 2:
        raise FerlabError(f"k-fold needs k >= 2, got {k}")
    samples = table.samples
    labels = [s.label for s in samples]
    try:
        if groups is None:
            folds = StratifiedKFold(k, shuffle=True, random_state=seed).split(samples, labels)
        else:
            ids = subject_ids(samples, groups)
            folds = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(samples, labels, ids)
        val_indices = [set(val.tolist()) for _, val in folds]
    except ValueError as err:
        raise FerlabError(f"cannot make {k} folds of {table.origin}: {err}") from None
    return [
        table.with_samples(replace(s, split="val" if i in fold else "train") for i, s in enumerate(samples))
        for fold in val_indices
    ]


def subsample(table: SampleTable, n: int, *, seed: int = 0) -> SampleTable:
    """`n` samples with each (split, class) keeping its share (largest remainders)."""
    if not 0 < n <= len(table):
        raise FerlabError(f"cannot subsample {n} of {len(table)} samples")
    strata: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for i, s in enumerate(table.samples):
        strata[(s.split, s.label)].append(i)
    keys = sorted(strata)
    exact = np.array([len(strata[key]) for key in keys]) * n / len(table)
    take = np.floor(exact).astype(int)
    take[np.argsort(take - exact)[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = sorted(i for key, m in zip(keys, take) for i in rng.choice(strata[key], size=m, replace=False))
    return table.with_samples(table.samples[i] for i in chosen)


def merge_classes(table: SampleTable, merges: Mapping[str, Iterable[str]]) -> SampleTable:
    """Relabel classes into others, e.g. ``{"angry": ["disgust"]}`` for FER2013's six-class variant.

    Targets and sources are emotion names (synonyms accepted); a model's classes
    stay canonical emotions.
    """
    mapping: dict[str, str] = {}
    for target, sources in merges.items():
        for source in sources:
            mapping[canonical_label(source)] = canonical_label(target)
    absent = sorted(set(mapping) - {s.label for s in table.samples})
    if absent:
        raise FerlabError(f"{table.origin} has no samples of {absent} to merge")
    return table.with_samples(
        replace(s, label=mapping.get(s.label, s.label), votes=_merge_votes(s.votes, mapping)) for s in table.samples
    )


def _merge_votes(votes: tuple[tuple[str, float], ...], mapping: Mapping[str, str]) -> tuple[tuple[str, float], ...]:
    merged: dict[str, float] = collections.defaultdict(float)
    for label, share in votes:
        merged[mapping.get(label, label)] += share
    return tuple(merged.items())


def prepare_splits(
    table: SampleTable, val_fraction: float, test_fraction: float, seed: int, groups: str | None = None
) -> SampleTable:
    """Give every sample a train, val or test split, keeping the dataset's own splits.

    - unsplit data: stratified train/val/test by the two fractions;
    - train without val: val is split off train (stratified), test kept as given;
    - train and val: used as they are.

    With `groups` (a subject pattern, see `subject_ids`) the splits made here keep
    each subject in one split.

    Raises:
        FerlabError: no training data, or a mix of split and unsplit samples.
    """
    present = table.splits()
    if "" in present and len(present) > 1:
        raise FerlabError(f"{table.origin} mixes samples with and without a split {present}")
    if present == [""]:
        shares = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
        result = ratio_split(table, {name: share for name, share in shares.items() if share > 0}, seed=seed, groups=groups)
    elif "train" not in present:
        raise FerlabError(f"{table.origin} has no training split (found {present}); add a train/ folder or use an unsplit tree")
    elif "val" not in present:
        carved = ratio_split(table.split("train"), {"train": 1 - val_fraction, "val": val_fraction}, seed=seed, groups=groups)
        result = table.with_samples(carved.samples + table.split("test").samples)
    else:
        result = table
    log.info("splits of %s: %s", table.origin, result.split_counts())
    return result
