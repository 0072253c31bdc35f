"""GitHub-flavoured markdown tables: the one writer behind reports, model cards and comparison tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["markdown_table"]

_RULES = {"l": "---", "r": "---:"}


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """The table's lines: header, alignment rule, one line per row; cells are ``str``-ed and ``|`` escaped.

    Args:
        align: one letter per column, ``l`` (left) or ``r`` (right, for numbers); default: the
            first column left, the others right.

    Raises:
        ValueError: `align` or a row does not have one entry per column.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - set(_RULES):
        raise ValueError(f"align needs one of l/r per column ({len(header)}), got {align!r}")

    def line(cells: Sequence[Any]) -> str:
        if len(cells) != len(header):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(header)} columns: {list(cells)}")
        texts = (str(cell).replace("|", "\\|") for cell in cells)
        return "|" + "|".join(f" {text} " if text else " " for text in texts) + "|"

    return [line(header), "|" + "".join(f"{_RULES[a]}|" for a in align), *(line(row) for row in rows)]
