"""ExpW (Expression in-the-Wild): whole photos plus a list of labelled face boxes.

``label.lst`` lines read ``image_name face_id top left right bottom confidence
expression`` (expression 0-6 in FER2013's order). Each face becomes one sample
whose box is cropped when its image is read, so no cropped copy is needed.
"""

from __future__ import annotations

from pathlib import Path

from ferlab.data.images import decode_image
from ferlab.data.labels import DATASET_LABELS
from ferlab.data.manifest import require_files
from ferlab.data.samples import Sample, SampleTable
from ferlab.errors import FerlabError

__all__ = ["expw_label_file", "read_expw"]

_LABEL_FILES = ("label/label.lst", "label.lst")
_PHOTO_FOLDERS = ("image/origin", "origin")
_FIELDS = "image_name face_id top left right bottom confidence expression"


def expw_label_file(root: Path) -> Path | None:
    """The ``label.lst`` of an ExpW folder, or None when `root` is no ExpW folder."""
    return next((root / name for name in _LABEL_FILES if (root / name).is_file()), None)


def _parse_line(fields: list[str], photos: Path, where: str) -> Sample:
    if len(fields) != 8:
        raise FerlabError(f"{where}: expected 8 fields ({_FIELDS}), found {len(fields)}")
    name, face_id, *box, confidence, expression = fields
    try:
        int(face_id)
        top, left, right, bottom = map(int, box)
        float(confidence)
    except ValueError:
        raise FerlabError(f"{where}: face_id and the box (top left right bottom) must be integers and the confidence a number") from None
    codes = DATASET_LABELS["expw"]
    if not expression.isdigit() or int(expression) not in codes:
        raise FerlabError(f"{where}: expression {expression!r} is not an ExpW label 0-6")
    if top < 0 or left < 0 or right <= left or bottom <= top:
        raise FerlabError(f"{where}: face box top={top} left={left} right={right} bottom={bottom} is empty or off the photo")
    return Sample(str(photos / name), codes[int(expression)], "", box=(left, top, right - left, bottom - top))


def read_expw(root: str | Path) -> SampleTable:
    """One sample per labelled face; ExpW is unsplit.

    Args:
        root: the folder holding ``label/label.lst`` (or ``label.lst``) and the
            photos in ``image/origin/`` (or ``origin/``).

    Raises:
        FerlabError: no label list or photo folder, a malformed line (named as
            ``label.lst:line N``), or missing photos.
    """
    root = Path(root)
    labels = expw_label_file(root)
    if labels is None:
        raise FerlabError(f"{root}: no {' or '.join(_LABEL_FILES)}; not an ExpW folder")
    photos = next((root / name for name in _PHOTO_FOLDERS if (root / name).is_dir()), None)
    if photos is None:
        raise FerlabError(f"{root}: no photo folder {' or '.join(n + '/' for n in _PHOTO_FOLDERS)} beside {labels}")
    rows: list[tuple[str, Sample]] = []
    try:
        with labels.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    where = f"{labels}:line {number}"
                    rows.append((where, _parse_line(line.split(), photos, where)))
    except (OSError, UnicodeDecodeError) as err:
        raise FerlabError(f"cannot read {labels}: {err}") from None
    if not rows:
        raise FerlabError(f"{labels} lists no faces")
    require_files(((where, Path(s.source)) for where, s in rows), f"photos listed in {labels.name}")
    return SampleTable([s for _, s in rows], lambda s: decode_image(Path(s.source), s.source), str(root))
