"""Writing a table out as a class-folder tree that any tool (and ferlab) can read."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ferlab._io import atomic_path, check_new_folder
from ferlab.data.samples import Sample, SampleTable, source_file_name
from ferlab.errors import FerlabError

__all__ = ["export_tree"]

log = logging.getLogger(__name__)


def _stem(sample: Sample, index: int) -> tuple[str, str]:
    """A file name stem and suffix for a sample: its own name when it has one."""
    name = source_file_name(sample.source)
    if ":row " in sample.source or not name:
        return f"row{index:06d}", ".png"
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
    return (f"{stem}_face{index:06d}", ".png") if sample.box else (stem, suffix)


def export_tree(table: SampleTable, out: str | Path) -> Path:
    """Write ``out/<split>/<class>/<name>`` (no split level for unsplit tables).

    Files on disk are copied byte for byte; zip members, CSV rows and face
    crops are written as PNG (lossless); those that cannot be decoded are left
    out with a warning. Names that clash get a numeric suffix. The output
    folder must be new or empty: nothing is overwritten.
    """
    out = check_new_folder(out)
    used: set[Path] = set()
    skipped = 0
    for index, sample in enumerate(tqdm(table.samples, desc=f"writing {len(table)} images", unit="img", disable=None, leave=False)):
        folder = out / sample.split / sample.label if sample.split else out / sample.label
        stem, suffix = _stem(sample, index)
        source = Path(sample.source)
        copy = sample.box is None and source.is_file()
        suffix = suffix if copy else ".png"
        target = folder / f"{stem}{suffix}"
        n = 1
        while target in used:
            target, n = folder / f"{stem}_{n}{suffix}", n + 1
        used.add(target)
        try:
            with atomic_path(target) as tmp:
                if copy:
                    shutil.copyfile(source, tmp)
                else:
                    table.read_image(sample).save(tmp, format="PNG")
        except FerlabError as err:
            log.warning("not exported: %s", err)
            skipped += 1
    log.info("wrote %d images to %s (%d unreadable ones left out)", len(table) - skipped, out, skipped)
    return out
