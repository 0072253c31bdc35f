"""Atomic file writes, so an interrupted run never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ferlab.errors import FerlabError

__all__ = ["atomic_path", "check_new_folder", "save_figure", "write_csv", "write_json", "write_text"]


def check_new_folder(path: str | Path, what: str = "output folder", hint: str = "choose a new one") -> Path:
    """`path` as a Path, when it is missing or an empty folder: outputs never land among existing files.

    Raises:
        FerlabError: `path` exists and is a file or a non-empty folder; the message ends with `hint`.
    """
    path = Path(path).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FerlabError(f"{what} {path} already exists and is not empty; {hint}")
    return path


@functools.cache
def _umask() -> int:
    """The process umask (reading it means setting it, so once, on first write, not at import)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes files owner-only, and some writers (safetensors) replace the file with their own: set the
        # usual permissions on whatever is there now.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """One row per dict, in `columns` order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib Figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
