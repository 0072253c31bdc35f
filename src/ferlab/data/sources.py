"""One entry point that recognises a dataset path and reads it into a SampleTable."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ferlab.data.fer2013_csv import read_fer2013_csv
from ferlab.data.labels import order_classes
from ferlab.data.samples import SampleTable
from ferlab.data.trees import read_folder_tree, read_zip_tree
from ferlab.errors import FerlabError

__all__ = ["open_dataset", "select_classes"]


def open_dataset(path: str | Path) -> SampleTable:
    """Read a dataset: a class-folder tree, the same tree in a ``.zip``, or FER2013 CSV(s).

    A folder with CSV files and no sub-folders is read as FER2013 CSVs
    (e.g. Kaggle's ``fer2013/fer2013.csv`` or ``train.csv`` + ``test.csv``).

    Raises:
        FerlabError: the path is missing, of an unknown kind, or malformed.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FerlabError(f"no such file or folder: {path}")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".zip":
        return read_zip_tree(path)
    if path.is_file() and suffix == ".csv":
        return read_fer2013_csv([path])
    if path.is_file():
        raise FerlabError(f"unsupported dataset file {path}: expected a folder, a .zip of class folders, or a FER2013 .csv")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    csvs = sorted(p for p in entries if p.is_file() and p.suffix.lower() == ".csv")
    if csvs and not any(p.is_dir() for p in entries):
        return read_fer2013_csv(csvs)
    return read_folder_tree(path)


def select_classes(table: SampleTable, classes: Iterable[str] | None) -> tuple[SampleTable, list[str]]:
    """Keep the samples of `classes` (all when None); returns the table and its class list in canonical order."""
    chosen = order_classes((s.label for s in table.samples), classes)
    kept = table.with_samples(s for s in table.samples if s.label in chosen)
    return kept, chosen
