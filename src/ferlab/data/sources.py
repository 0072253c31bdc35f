"""One entry point that recognises a dataset path and reads it into a SampleTable."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from ferlab.data.expw import expw_label_file, read_expw
from ferlab.data.fer2013_csv import read_fer2013_csv
from ferlab.data.ferplus import read_ferplus
from ferlab.data.labels import order_classes
from ferlab.data.manifest import read_manifest
from ferlab.data.rafdb import rafdb_label_file, read_rafdb
from ferlab.data.samples import SampleTable
from ferlab.data.trees import read_folder_tree, read_zip_tree
from ferlab.errors import FerlabError

__all__ = ["open_dataset", "select_classes"]

#: Reads a path; the flag asks for soft labels where the format has votes (FER+).
_Reader = Callable[[Path, bool], SampleTable]


def _ferplus(path: Path, soft: bool) -> SampleTable:
    return read_ferplus(path, mode="soft" if soft else "majority")

#: CSV formats: (header as shown in messages, the columns that tell it, reader).
#: A header goes to the format it shares most telling columns with, so a
#: half-right header still gets that reader's message about what is missing.
_CSV_FORMATS: tuple[tuple[str, frozenset[str], _Reader], ...] = (
    ("path,label[,split][,x,y,w,h][,votes] (a manifest)", frozenset({"path", "label"}), lambda p, _: read_manifest(p)),
    ("emotion,pixels[,Usage] (FER2013)", frozenset({"emotion", "pixels"}), lambda p, _: read_fer2013_csv([p])),
    ("Usage,Image name,neutral,...,unknown,NF (FER+ fer2013new.csv)", frozenset({"image name"}), _ferplus),
)

#: Folders recognised by a file they hold, tried before FER2013 CSV folders and class-folder trees.
_FOLDER_FORMATS: tuple[tuple[Callable[[Path], bool], _Reader], ...] = (
    (lambda p: expw_label_file(p) is not None, lambda p, _: read_expw(p)),
    (lambda p: rafdb_label_file(p) is not None, lambda p, _: read_rafdb(p)),
    (lambda p: (p / "fer2013new.csv").is_file(), lambda p, soft: _ferplus(p / "fer2013new.csv", soft)),
)


def _read_csv(path: Path, soft: bool) -> SampleTable:
    """Read a CSV with the reader its header names."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = {name.strip().lower() for name in next(csv.reader(handle), [])}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FerlabError(f"cannot read CSV {path}: {err}") from None
    _, columns, read = max(_CSV_FORMATS, key=lambda fmt: len(fmt[1] & header))  # the first on a tie
    if not columns & header:
        accepted = "; ".join(shown for shown, _, _ in _CSV_FORMATS)
        raise FerlabError(f"{path}: unknown CSV header {sorted(header)}; expected one of: {accepted}")
    return read(path, soft)


def open_dataset(path: str | Path, *, soft_labels: bool = False) -> SampleTable:
    """Read a dataset, recognising its format from the path.

    Files: a ``.zip`` of class folders, or a CSV told by its header (a manifest,
    FER2013, or FER+ ``fer2013new.csv``). Folders: ExpW (``label/label.lst``),
    RAF-DB (``list_patition_label.txt`` here or one folder down), FER+ (holding
    ``fer2013new.csv``), FER2013 CSVs with no sub-folders (Kaggle's
    ``fer2013.csv`` or ``train.csv`` + ``test.csv``), else a class-folder tree.

    Args:
        soft_labels: keep vote shares (FER+ soft mode, a manifest's ``votes``);
            by default every sample has its hard (majority) label only.

    Raises:
        FerlabError: the path is missing, of an unknown kind, or malformed.
    """
    table = _read(Path(path).expanduser(), soft_labels)
    if soft_labels or not any(s.votes for s in table.samples):
        return table
    return table.with_samples(replace(s, votes=()) for s in table.samples)


def _read(path: Path, soft: bool) -> SampleTable:
    if not path.exists():
        raise FerlabError(f"no such file or folder: {path}")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".zip":
        return read_zip_tree(path)
    if path.is_file() and suffix == ".csv":
        return _read_csv(path, soft)
    if path.is_file():
        raise FerlabError(f"unsupported dataset file {path}: expected a folder, a .zip of class folders, or a .csv")
    for detect, read in _FOLDER_FORMATS:
        if detect(path):
            return read(path, soft)
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
