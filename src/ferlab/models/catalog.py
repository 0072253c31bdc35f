"""The registered architectures as `ferlab models` lists them, read from a shipped file: no torch, no timm.

Listing the registry means importing every architecture (torch, then timm and torchvision:
some 4 s here) and building each model to count its parameters. The listing is a fact of the
installed version, so it ships as ``catalog.json``, written by `write_catalog` from the registry
itself; a test checks that the file and the registry agree. Run ``python -m ferlab.models.catalog``
after adding or changing an architecture.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ferlab._io import write_json

__all__ = ["CATALOG_PATH", "ModelSummary", "read_catalog", "write_catalog"]

CATALOG_PATH = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class ModelSummary:
    """A registered model at its default input, with 7 classes (FER2013's)."""

    name: str
    params: int | None  # None when the model cannot be built alone (an ensemble needs members)
    input_size: int
    channels: int
    description: str


def read_catalog(pattern: str = "*", path: Path = CATALOG_PATH) -> list[ModelSummary]:
    """The shipped summaries whose names match `pattern`, sorted by name."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [ModelSummary(**row) for row in rows if fnmatch.fnmatch(row["name"], pattern)]


def write_catalog(path: Path = CATALOG_PATH) -> Path:
    """Write the registry's summaries (`ferlab.models.summary.summarize_models`) to `path`, atomically."""
    from ferlab.models.summary import summarize_models

    write_json(path, [asdict(summary) for summary in summarize_models()])
    return path


if __name__ == "__main__":
    print(f"wrote {write_catalog()}")
