"""RAF-DB basic: ``list_patition_label.txt`` (sic) names each image and its label 1-7.

The split is the name's prefix (``train_00001.jpg``, ``test_0001.jpg``). The
aligned 100x100 crops (``Image/aligned/train_00001_aligned.jpg``) are used when
present, else the original photos; Kaggle copies that put the images straight
under ``aligned/`` or ``Image/`` work too.
"""

from __future__ import annotations

from pathlib import Path

from ferlab.data.images import decode_image
from ferlab.data.labels import DATASET_LABELS
from ferlab.data.manifest import require_files
from ferlab.data.samples import Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = ["rafdb_label_file", "read_rafdb"]

_LABEL_NAME = "list_patition_label.txt"
# (folder, whether file names carry the "_aligned" suffix), in order of preference.
_IMAGE_FOLDERS = (
    ("Image/aligned", True), ("aligned", True), ("Image", True),
    ("Image/original", False), ("original", False), ("Image", False),
)


def rafdb_label_file(root: Path) -> Path | None:
    """The label list of a RAF-DB folder (in `root` or one folder down, e.g. ``EmoLabel/``), or None."""
    candidates = (root / _LABEL_NAME, root / "EmoLabel" / _LABEL_NAME, *sorted(root.glob(f"*/{_LABEL_NAME}")))
    return next((path for path in candidates if path.is_file()), None)


def _image_name(name: str, aligned: bool) -> str:
    path = Path(name)
    return f"{path.stem}_aligned{path.suffix}" if aligned else name


def _parse_line(fields: list[str], where: str) -> tuple[str, str, str]:
    if len(fields) != 2:
        raise FerlabError(f"{where}: expected 'image_name label' (e.g. train_00001.jpg 5), found {len(fields)} fields")
    name, code = fields
    split = split_name(name.partition("_")[0])
    if not split:
        raise FerlabError(f"{where}: image name {name!r} does not start with train_ or test_")
    codes = DATASET_LABELS["rafdb"]
    if not code.isdigit() or int(code) not in codes:
        raise FerlabError(f"{where}: label {code!r} is not a RAF-DB label 1-7")
    return name, codes[int(code)], split


def read_rafdb(root: str | Path) -> SampleTable:
    """The RAF-DB basic-expression samples, split into train and test.

    Args:
        root: the RAF-DB ``basic`` folder (holding ``EmoLabel/`` and ``Image/``),
            or the label list itself.

    Raises:
        FerlabError: no label list, a malformed line (named as file:line N), or missing images.
    """
    root = Path(root)
    labels = root if root.is_file() else rafdb_label_file(root)
    if labels is None:
        raise FerlabError(f"{root}: no {_LABEL_NAME} here or one folder down; not a RAF-DB folder")
    base = labels.parent.parent if labels.parent.name == "EmoLabel" else labels.parent
    rows: list[tuple[str, tuple[str, str, str]]] = []
    try:
        with labels.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    where = f"{labels}:line {number}"
                    rows.append((where, _parse_line(line.split(), where)))
    except (OSError, UnicodeDecodeError) as err:
        raise FerlabError(f"cannot read {labels}: {err}") from None
    if not rows:
        raise FerlabError(f"{labels} lists no images")
    first = rows[0][1][0]
    # One layout for the whole dataset, chosen by where its first image is.
    layout = next(((base / f, a) for f, a in _IMAGE_FOLDERS if (base / f / _image_name(first, a)).is_file()), None)
    if layout is None:
        looked = ", ".join(f"{f}/{_image_name(first, a)}" for f, a in _IMAGE_FOLDERS)
        raise FerlabError(f"{labels}: no image for {first} under {base} (looked for {looked})")
    folder, aligned = layout
    samples = [(where, Sample(str(folder / _image_name(name, aligned)), label, split)) for where, (name, label, split) in rows]
    require_files(((where, Path(s.source)) for where, s in samples), f"images listed in {labels.name}")
    return SampleTable([s for _, s in samples], lambda s: decode_image(Path(s.source), s.source), str(base))
