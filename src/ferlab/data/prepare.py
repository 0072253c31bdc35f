"""`split_dataset` and `write_split`: the whole "make me a split" job behind ``ferlab data split``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ferlab._io import check_new_folder
from ferlab.data.export import export_tree
from ferlab.data.manifest import write_manifest
from ferlab.data.samples import SampleTable
from ferlab.data.sources import open_dataset, select_classes
from ferlab.data.splits import kfold_splits, merge_classes, parse_ratios, ratio_split, subsample
from ferlab.errors import FerlabError

__all__ = ["SPLIT_FORMATS", "split_dataset", "write_split"]

SPLIT_FORMATS = ("tree", "csv")


def split_dataset(
    path: str | Path,
    *,
    ratios: str | Mapping[str, float] | None = None,
    groups: str | None = None,
    kfold: int | None = None,
    subsample_to: int | None = None,
    classes: Iterable[str] | None = None,
    merge: Mapping[str, Iterable[str]] | None = None,
    seed: int = 0,
) -> list[SampleTable]:
    """Read a dataset and reshape it: merges, class subset, subsample, then a ratio split or k folds.

    Returns one table, or k tables (fold i as ``val``) with `kfold`. Without
    `ratios` or `kfold` the dataset's own splits are kept.
    """
    if ratios is not None and kfold is not None:
        raise FerlabError("give split ratios or k-fold, not both")
    table = open_dataset(path)
    if merge:
        table = merge_classes(table, merge)
    table, _ = select_classes(table, classes)
    if subsample_to is not None:
        table = subsample(table, subsample_to, seed=seed)
    if kfold is not None:
        return kfold_splits(table, kfold, seed=seed, groups=groups)
    if ratios is not None:
        shares = parse_ratios(ratios) if isinstance(ratios, str) else dict(ratios)
        return [ratio_split(table, shares, seed=seed, groups=groups)]
    if groups is not None:
        raise FerlabError("a subject pattern (groups) needs split ratios or k-fold")
    return [table]


def write_split(tables: list[SampleTable], out: str | Path, fmt: str = "tree") -> list[Path]:
    """Write each table as a class-folder tree or a CSV manifest; several tables go to ``fold0`` ... ``foldK``."""
    if fmt not in SPLIT_FORMATS:
        raise FerlabError(f"unknown split format {fmt!r}; choose one of {SPLIT_FORMATS}")
    out = check_new_folder(out)
    targets = [out] if len(tables) == 1 else [out / f"fold{i}" for i in range(len(tables))]
    written = []
    for table, target in zip(tables, targets):
        if fmt == "tree":
            written.append(export_tree(table, target))
        else:
            written.append(write_manifest(table, target / "manifest.csv"))
    return written
