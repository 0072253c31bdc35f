"""CSV manifests: one image path and label per row, the way to bring in any dataset by hand.

Header ``path,label[,split][,x,y,w,h][,votes]``, or one ``box`` column holding
"x y w h"; paths are relative to the manifest's folder, or absolute. ferlab
writes the same format, so a written manifest reads back as the same samples.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ferlab._io import write_csv
from ferlab.data._csv import header_columns
from ferlab.data.images import decode_image
from ferlab.data.labels import canonical_label
from ferlab.data.samples import Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = ["read_manifest", "write_manifest"]

_BOX_COLUMNS = ("x", "y", "w", "h")
_HEADER = "path,label[,split][,x,y,w,h][,votes]"
# Sources that are no file of their own: zip members and FER2013 CSV rows.
_NOT_A_FILE = re.compile(r"\.zip:|\.csv:row \d+$", re.IGNORECASE)


def require_files(files: Iterable[tuple[str, Path]], what: str) -> None:
    """Check that listed files exist, up front, so a dataset fails on reading rather than mid-training.

    Args:
        files: (where, file) pairs, `where` naming the row or line that lists the file.
        what: what the files are, for the message (e.g. "photos listed in label.lst").

    Raises:
        FerlabError: some files are missing; the message counts them and lists the first few.
    """
    exists: dict[Path, bool] = {}
    missing: list[str] = []
    total = 0
    for where, file in files:
        total += 1
        if file not in exists:
            exists[file] = file.is_file()
        if not exists[file]:
            missing.append(f"{where}: {file}")
    if missing:
        raise FerlabError(f"{len(missing)} of {total} {what} do not exist, e.g. {'; '.join(missing[:5])}")


def _parse_box(values: list[str], where: str, column: str) -> tuple[int, int, int, int] | None:
    if not any(v.strip() for v in values):
        return None
    try:
        x, y, w, h = (int(v) for v in values)
    except ValueError:
        raise FerlabError(f"{where}: column {column!r}: box {' '.join(values)!r} is not four integers x y w h") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise FerlabError(f"{where}: column {column!r}: box ({x}, {y}, {w}, {h}) needs x, y >= 0 and a positive width and height")
    return x, y, w, h


def _parse_votes(text: str, where: str) -> tuple[tuple[str, float], ...]:
    if not text:
        return ()
    shares: dict[str, float] = {}
    for part in text.split(";"):
        name, _, share = part.partition(":")
        try:
            label = canonical_label(name)
        except FerlabError as err:
            raise FerlabError(f"{where}: column 'votes': {err}") from None
        try:
            value = float(share)
        except ValueError:
            value = math.nan
        if not 0 <= value <= 1 or label in shares:
            raise FerlabError(f"{where}: column 'votes': {part!r} is not a new class:share with a share in 0-1 (e.g. happy:0.7;neutral:0.3)")
        shares[label] = value
    if abs(sum(shares.values()) - 1) > 1e-3:
        raise FerlabError(f"{where}: column 'votes': shares sum to {sum(shares.values()):.4g}, not 1")
    return tuple(shares.items())


def read_manifest(path: str | Path) -> SampleTable:
    """Samples listed in a CSV manifest; every image must exist.

    Labels may be any case or a synonym ("Happiness"); an empty split means unsplit.

    Raises:
        FerlabError: a missing column or image, or a bad label, split, box or votes value;
            the message names the file, row and column.
    """
    path = Path(path)
    rows: list[tuple[str, Sample]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = header_columns(reader, path, ("path", "label"), _HEADER)
            box_columns = [c for c in _BOX_COLUMNS if c in columns]
            if box_columns and (len(box_columns) < 4 or "box" in columns):
                raise FerlabError(f"{path}: a face box needs either all of the columns x,y,w,h or one 'box' column (found {reader.fieldnames})")
            for row in reader:
                where = f"{path}:row {reader.line_num}"
                cell = {name: (row.get(original) or "").strip() for name, original in columns.items()}
                rows.append((where, _parse_row(cell, path.parent, where, box_columns)))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FerlabError(f"cannot read CSV {path}: {err}") from None
    if not rows:
        raise FerlabError(f"{path}: the manifest has no rows")
    require_files(((where, Path(s.source)) for where, s in rows), "image files in column 'path'")
    return SampleTable([s for _, s in rows], lambda s: decode_image(Path(s.source), s.source), str(path))


def _parse_row(cell: dict[str, str], folder: Path, where: str, box_columns: list[str]) -> Sample:
    if not cell["path"]:
        raise FerlabError(f"{where}: column 'path' is empty")
    image = Path(cell["path"])
    try:
        label = canonical_label(cell["label"])
    except FerlabError as err:
        raise FerlabError(f"{where}: column 'label': {err}") from None
    split = cell.get("split", "")
    if split:
        split = split_name(split) or ""
        if not split:
            raise FerlabError(f"{where}: column 'split': {cell['split']!r} is not train, val or test (or empty for unsplit)")
    if box_columns:
        box = _parse_box([cell[c] for c in _BOX_COLUMNS], where, "x,y,w,h")
    elif cell.get("box"):
        box = _parse_box(re.split(r"[,\s]+", cell["box"]), where, "box")
    else:
        box = None
    votes = _parse_votes(cell.get("votes", ""), where)
    return Sample(str(image if image.is_absolute() else folder / image), label, split, box, votes)


def write_manifest(table: SampleTable, path: str | Path, *, relative_to: str | Path | None = None) -> Path:
    """Write `table` as a manifest (atomically) that `read_manifest` reads back as the same samples.

    Box columns and a ``votes`` column (``class:share;class:share``) are written
    only when some sample has a box or votes.

    Args:
        table: samples whose images are files on disk.
        path: the manifest to write.
        relative_to: images inside this folder are written relative to it, others
            as absolute paths. Relative paths are read against the manifest's
            folder, so this defaults to that folder; give another only when the
            manifest will be moved there.

    Returns:
        `path`.

    Raises:
        FerlabError: a sample's image is no file on disk (a zip member or a CSV row).
    """
    path = Path(path)
    base = Path(os.path.abspath(path.parent if relative_to is None else relative_to))
    has_box = any(s.box is not None for s in table.samples)
    has_votes = any(s.votes for s in table.samples)
    rows: list[dict[str, object]] = []
    for sample in table.samples:
        if not Path(sample.source).is_file():
            if _NOT_A_FILE.search(sample.source):
                raise FerlabError(f"cannot write a manifest for {sample.source}: the image is inside an archive or CSV, not a file; export the images as a folder tree first")
            raise FerlabError(f"cannot write a manifest for {sample.source}: no such image file")
        image = Path(os.path.abspath(sample.source))
        row: dict[str, object] = {
            "path": (image.relative_to(base) if image.is_relative_to(base) else image).as_posix(),
            "label": sample.label,
            "split": sample.split,
        }
        if has_box:
            row.update(zip(_BOX_COLUMNS, sample.box or ("",) * 4))
        if has_votes:
            # repr() of a float reads back as the same float, so shares round-trip exactly.
            row["votes"] = ";".join(f"{name}:{float(share)!r}" for name, share in sample.votes)
        rows.append(row)
    columns = ["path", "label", "split", *(_BOX_COLUMNS if has_box else ()), *(("votes",) if has_votes else ())]
    write_csv(path, rows, columns)
    return path
