"""The header check every CSV reader shares: columns in any case, missing ones named."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from ferlab.errors import FerlabError


def header_columns(reader: csv.DictReader, path: Path, needed: Iterable[str], expected: str) -> dict[str, str]:
    """Map each lower-cased column name to the name as written.

    Raises:
        FerlabError: a needed column is missing; names the file, what it has and what it should have.
    """
    columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    missing = [c for c in needed if c not in columns]
    if missing:
        what = f"{missing[0]!r} column" if len(missing) == 1 else f"columns {missing}"
        raise FerlabError(f"{path}: no {what} (found {reader.fieldnames}); expected {expected}")
    return columns
