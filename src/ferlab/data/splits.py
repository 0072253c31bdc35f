"""Turning whatever splits a dataset has into train / val (/ test) for a run."""

from __future__ import annotations

import logging
from dataclasses import replace

from sklearn.model_selection import train_test_split

from ferlab.data.samples import Sample, SampleTable
from ferlab.errors import FerlabError

__all__ = ["prepare_splits", "stratified_split"]

log = logging.getLogger(__name__)


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split off `fraction` of the samples with the class proportions kept (scikit-learn)."""
    if not 0 < fraction < 1:
        raise FerlabError(f"a split fraction must lie between 0 and 1, got {fraction}")
    labels = [s.label for s in samples]
    try:
        keep, taken = train_test_split(samples, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as err:
        raise FerlabError(f"cannot split {len(samples)} samples {fraction:.0%} stratified: {err}") from None
    return keep, taken


def _mark(samples: list[Sample], split: str) -> list[Sample]:
    return [replace(s, split=split) for s in samples]


def prepare_splits(table: SampleTable, val_fraction: float, test_fraction: float, seed: int) -> SampleTable:
    """Give every sample a train, val or test split, keeping the dataset's own splits.

    - unsplit data: stratified train/val/test by the two fractions;
    - train without val: val is split off train (stratified), test kept as given;
    - train and val: used as they are.

    Raises:
        FerlabError: no training data, or a mix of split and unsplit samples.
    """
    present = table.splits()
    if "" in present and len(present) > 1:
        raise FerlabError(f"{table.origin} mixes samples with and without a split {present}")
    samples = table.samples
    if present == [""]:
        rest, test = stratified_split(samples, test_fraction, seed) if test_fraction > 0 else (samples, [])
        train, val = stratified_split(rest, val_fraction / (1 - test_fraction), seed)
        samples = _mark(train, "train") + _mark(val, "val") + _mark(test, "test")
    elif "train" not in present:
        raise FerlabError(f"{table.origin} has no training split (found {present}); add a train/ folder or use an unsplit tree")
    elif "val" not in present:
        train, val = stratified_split([s for s in samples if s.split == "train"], val_fraction, seed)
        samples = train + _mark(val, "val") + [s for s in samples if s.split == "test"]
    result = table.with_samples(samples)
    log.info("splits of %s: %s", table.origin, result.split_counts())
    return result
