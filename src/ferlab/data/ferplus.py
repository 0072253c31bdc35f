"""FER+: Microsoft's ten-annotator votes for the FER2013 images (``fer2013new.csv``).

The votes file has one row per FER2013 row, in the same order, with an empty
``Image name`` where FER+ dropped the image. Images come either from that
FER2013 CSV (matched row for row) or from the PNGs Microsoft's script writes
(``FER2013Train/fer0000000.png``). Rows are matched by position, not by name:
from the 60th row on, the names drift from the row numbers.
"""

from __future__ import annotations

import collections
import csv
import logging
import math
import os
from pathlib import Path
from typing import Literal, NamedTuple

from ferlab.data._csv import header_columns
from ferlab.data.fer2013_csv import read_fer2013_csv
from ferlab.data.images import decode_image
from ferlab.data.labels import EMOTIONS, canonical_label
from ferlab.data.samples import ImageReader, Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = ["read_ferplus"]

log = logging.getLogger(__name__)

_EMOTION_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
_OTHER_COLUMNS = ("unknown", "nf")  # NF: not a face
_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


class _Votes(NamedTuple):
    where: str
    name: str
    split: str
    emotions: dict[str, float]  # canonical emotion -> votes
    other: float  # unknown + not-a-face votes


def _read_votes(path: Path) -> list[_Votes]:
    rows: list[_Votes] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = header_columns(reader, path, ("usage", "image name", *_EMOTION_COLUMNS, *_OTHER_COLUMNS),
                                     f"the FER+ header {_HEADER}")
            for row in reader:
                where = f"{path}:row {reader.line_num}"
                cell = {name: (row.get(original) or "").strip() for name, original in columns.items()}
                split = split_name(cell["usage"]) or ""
                if not split:
                    raise FerlabError(f"{where}: Usage {cell['usage']!r} is not Training, PublicTest or PrivateTest")
                counts: dict[str, float] = {}
                for column in (*_EMOTION_COLUMNS, *_OTHER_COLUMNS):
                    try:
                        counts[column] = float(cell[column])
                    except ValueError:
                        counts[column] = math.nan
                    if not (math.isfinite(counts[column]) and counts[column] >= 0):
                        raise FerlabError(f"{where}: column {columns[column]!r}: {cell[column]!r} is not a vote count")
                emotions = {canonical_label(c): counts[c] for c in _EMOTION_COLUMNS}
                rows.append(_Votes(where, cell["image name"], split, emotions, counts["unknown"] + counts["nf"]))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FerlabError(f"cannot read CSV {path}: {err}") from None
    if not rows:
        raise FerlabError(f"{path}: the CSV has no rows")
    return rows


def _label(row: _Votes, mode: str) -> tuple[str, str]:
    """(label, "") for a kept row, ("", why) for a dropped one."""
    top = max(row.emotions.values())
    leaders = [e for e in EMOTIONS if row.emotions[e] == top]  # canonical order breaks soft ties
    if top == 0:
        return "", "without emotion votes"
    if mode == "majority" and row.other > top:
        return "", "where unknown/not-a-face votes outnumber the top emotion"
    if mode == "majority" and len(leaders) > 1:
        return "", "with a tie for the top emotion"
    return leaders[0], ""


def _shares(row: _Votes) -> tuple[tuple[str, float], ...]:
    total = sum(row.emotions.values())
    return tuple((e, row.emotions[e] / total) for e in EMOTIONS if row.emotions[e])


def read_ferplus(
    votes_csv: str | Path,
    images: str | Path | None = None,
    *,
    mode: Literal["majority", "soft"] = "majority",
) -> SampleTable:
    """FER+ samples with labels from the annotators' votes over the 8 emotions.

    Rows without an image name (dropped by FER+) are skipped. In "majority" mode
    the label is the emotion with most votes, and rows are dropped where unknown
    and not-a-face votes together outnumber it or where two emotions tie for the
    top. In "soft" mode samples also carry `votes`, the shares of the emotion
    votes (unknown and not-a-face left out), and the label is the top emotion
    (ties go to the first in canonical order); only rows without emotion votes
    are dropped. What is dropped is logged.

    Args:
        votes_csv: Microsoft's ``fer2013new.csv``.
        images: the FER2013 CSV it was made for, or a folder holding the named
            PNGs (searched recursively). Default: ``fer2013.csv`` beside the
            votes file, else the votes file's folder.
        mode: "majority" or "soft".

    Raises:
        FerlabError: a malformed votes row, a FER2013 CSV that does not match the
            votes row for row, or missing PNGs.
    """
    if mode not in ("majority", "soft"):
        raise FerlabError(f"FER+ mode {mode!r} is not 'majority' or 'soft'")
    votes_csv = Path(votes_csv)
    rows = _read_votes(votes_csv)
    if images is None:
        beside = votes_csv.with_name("fer2013.csv")
        images = beside if beside.is_file() else votes_csv.parent
    images = Path(images)
    if images.is_file():
        sources, reader = _from_fer2013_csv(rows, votes_csv, images)
    elif images.is_dir():
        sources, reader = _from_folder(rows, votes_csv, images)
    else:
        raise FerlabError(f"no images for {votes_csv}: {images} does not exist; give the fer2013.csv it was made for, or a folder of its PNGs")
    dropped: collections.Counter[str] = collections.Counter()
    samples: list[Sample] = []
    for row, source in zip(rows, sources):
        if not row.name:
            dropped["without an image (dropped by FER+)"] += 1
            continue
        label, why = _label(row, mode)
        if why:
            dropped[why] += 1
            continue
        samples.append(Sample(source, label, row.split, votes=_shares(row) if mode == "soft" else ()))
    if dropped:
        log.info("%s: kept %d of %d rows (%s); dropped %s", votes_csv, len(samples), len(rows), mode,
                 ", ".join(f"{n} {why}" for why, n in dropped.items()))
    if not samples:
        raise FerlabError(f"{votes_csv}: no row has a usable label in {mode} mode")
    return SampleTable(samples, reader, str(votes_csv))


def _from_fer2013_csv(rows: list[_Votes], votes_csv: Path, fer_csv: Path) -> tuple[list[str], ImageReader]:
    """Each row's source in the FER2013 CSV, and that table's reader; checks the two files line up."""
    fer = read_fer2013_csv([fer_csv])
    if len(fer) != len(rows):
        raise FerlabError(f"{votes_csv} has {len(rows)} rows but {fer_csv} has {len(fer)}: FER+ votes need the fer2013.csv they were made for, row for row")
    for row, sample in zip(rows, fer.samples):
        if sample.split and sample.split != row.split:
            raise FerlabError(f"{row.where} ({row.split}) and {sample.source} ({sample.split}) disagree on the split: the files do not line up row for row")
    # FER+ samples carry no box, so the FER2013 table's read_image returns the whole 48x48 image.
    return [s.source for s in fer.samples], fer.read_image


def _from_folder(rows: list[_Votes], votes_csv: Path, folder: Path) -> tuple[list[str], ImageReader]:
    """Each row's PNG under `folder` ("" for rows without a name), and a file reader."""
    wanted = {row.name for row in rows if row.name}
    found: dict[str, str] = {}
    for here, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(wanted.intersection(names)):
            found.setdefault(name, os.path.join(here, name))
    missing = [f"{row.where}: {row.name}" for row in rows if row.name and row.name not in found]
    if missing:
        raise FerlabError(f"{len(missing)} of {len(wanted)} images named in {votes_csv} are not under {folder}, e.g. {'; '.join(missing[:5])}")
    return [found.get(row.name, "") for row in rows], lambda s: decode_image(Path(s.source), s.source)
