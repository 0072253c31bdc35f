"""Class-folder trees, on disk or inside a zip archive (read without extracting).

A tree is either split (``train/``, ``val|validation/``, ``test|testing/``, each
holding class folders) or unsplit (class folders at the top). Both sources list
their relative paths and share one parser, so they yield identical samples.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from ferlab.data.images import decode_image, is_image_name
from ferlab.data.labels import canonical_label
from ferlab.data.samples import Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = ["read_folder_tree", "read_zip_tree"]

log = logging.getLogger(__name__)


def _ignored(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _class_label(folder: str, where: str) -> str:
    try:
        return canonical_label(folder)
    except FerlabError as err:
        raise FerlabError(f"unknown class folder {where}: {err}") from None


def parse_tree(files: Iterable[str], dirs: Iterable[str], root: str) -> list[tuple[str, str, str]]:
    """(relative path, label, split) of every image in a tree of posix relative paths.

    Args:
        files: relative paths of all files.
        dirs: relative paths of all folders (so that empty class folders are seen).
        root: shown in messages.
    """
    paths = [PurePosixPath(f) for f in files if not any(_ignored(p) for p in PurePosixPath(f).parts)]
    folders = {PurePosixPath(d) for d in dirs if not any(_ignored(p) for p in PurePosixPath(d).parts)}
    folders.update(parent for p in paths for parent in p.parents if parent != PurePosixPath("."))
    prefix = PurePosixPath(".")
    # Descend through single wrapper folders (e.g. a zip holding "fer2013/train/...").
    while True:
        tops = {f for f in folders if f.parent == prefix}
        if len(tops) != 1 or any(p.parent == prefix for p in paths):
            break
        (top,) = tops
        if split_name(top.name) or _is_emotion(top.name):
            break
        prefix = top
    tops = sorted(f for f in folders if f.parent == prefix)
    if not tops:
        raise FerlabError(f"no class folders in {root}: expected one folder per emotion, or train/ val/ test/ folders holding them")
    split_tops = [t for t in tops if split_name(t.name)]
    if split_tops and len(split_tops) != len(tops):
        odd = [t.name for t in tops if not split_name(t.name)]
        raise FerlabError(f"{root} mixes split folders with other folders {odd}: expected only train/ val|validation/ test|testing/")
    class_dirs: list[tuple[PurePosixPath, str]] = []
    for top in tops:
        if split_tops:
            split = split_name(top.name) or ""
            class_dirs += [(d, split) for d in sorted(folders) if d.parent == top]
        else:
            class_dirs.append((top, ""))
    if not class_dirs:
        raise FerlabError(f"no class folders in {root}: the split folders are empty")
    depth = len(prefix.parts) + (2 if split_tops else 1)
    by_folder: dict[PurePosixPath, list[PurePosixPath]] = {folder: [] for folder, _ in class_dirs}
    skipped: list[str] = []
    for p in sorted(paths):
        folder = PurePosixPath(*p.parts[:depth])
        if len(p.parts) > depth and is_image_name(p.name) and folder in by_folder:
            by_folder[folder].append(p)
        else:
            skipped.append(str(p))
    if skipped:
        log.warning("%s: skipped %d files that are not images in class folders, e.g. %s", root, len(skipped), skipped[:3])
    rows: list[tuple[str, str, str]] = []
    for folder, split in class_dirs:
        label = _class_label(folder.name, f"{root}/{folder}")
        if not by_folder[folder]:
            raise FerlabError(f"class folder {root}/{folder} holds no images")
        rows += [(str(p), label, split) for p in by_folder[folder]]
    return rows


def _is_emotion(name: str) -> bool:
    try:
        canonical_label(name)
    except FerlabError:
        return False
    return True


def read_folder_tree(root: Path) -> SampleTable:
    """Samples of a class-folder tree on disk."""
    files: list[str] = []
    dirs: list[str] = []
    for here, subdirs, names in os.walk(root):
        rel = Path(here).relative_to(root)
        dirs += [(rel / d).as_posix() for d in subdirs]
        files += [(rel / n).as_posix() for n in names]
    rows = parse_tree(files, dirs, str(root))
    samples = [Sample(str(root / rel), label, split) for rel, label, split in rows]
    return SampleTable(samples, lambda s: decode_image(Path(s.source), s.source), str(root))


class _ZipReader:
    """Reads members of one archive; each process opens its own handle (zip handles don't survive fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._prefix = f"{path}:"
        self._handle: zipfile.ZipFile | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def __call__(self, sample: Sample):
        if self._pid != os.getpid():
            self._handle, self._pid = zipfile.ZipFile(self.path), os.getpid()
        member = sample.source[len(self._prefix):]
        try:
            data = self._handle.read(member)
        except (KeyError, zipfile.BadZipFile, OSError) as err:
            raise FerlabError(f"cannot read {sample.source}: {err}") from None
        return decode_image(data, sample.source)


def read_zip_tree(path: Path) -> SampleTable:
    """Samples of a class-folder tree inside a zip archive; nothing is extracted."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise FerlabError(f"cannot open zip archive {path}: {err}") from None
    files = [i.filename for i in infos if not i.is_dir()]
    dirs = [i.filename.rstrip("/") for i in infos if i.is_dir()]
    rows = parse_tree(files, dirs, str(path))
    samples = [Sample(f"{path}:{rel}", label, split) for rel, label, split in rows]
    return SampleTable(samples, _ZipReader(path), str(path))
