"""Image inputs as users give them: files, folders (searched recursively) and glob patterns.

One helper below inference (`Recognizer.predict_files`) and evaluation (`explain_files`).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from ferlab.data.images import is_image_name
from ferlab.errors import FerlabError

__all__ = ["expand_inputs"]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for images; glob patterns expanded.

    Raises:
        FerlabError: a path that does not exist, or a folder or pattern with no images.
    """
    found: list[Path] = []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
            if not images:
                raise FerlabError(f"folder {path} holds no images")
            found += images
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise FerlabError(f"no files match {item}")
            found += matches
        else:
            raise FerlabError(f"no such file or folder: {path}")
    return found
