"""Class-folder trees, on disk or inside a zip archive (read without extracting).

A tree is either split (``train/``, ``val|validation/``, ``test|testing/``, each
holding class folders) or unsplit (class folders at the top). Both sources are
listed by `list_tree` into relative paths that one parser reads, so they yield
identical samples, and the scanner sees exactly the files that reading sees.

Listing is also where untrusted trees are made safe: zip members that escape
the archive or decompress to absurd sizes, and symlink loops on disk, are refused;
several zip members of one name are listed once, with the clash recorded. Reading
then refuses what it cannot read safely (FIFOs, devices, huge files, encrypted or
oddly compressed members) one file at a time, with a message naming it.
"""

from __future__ import annotations

import collections
import logging
import lzma
import os
import re
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from ferlab.data.images import MAX_IMAGE_BYTES, decode_image, is_image_name, read_image_file, too_large
from ferlab.data.labels import canonical_label
from ferlab.data.samples import Sample, SampleTable, split_name
from ferlab.errors import FerlabError

__all__ = [
    "MAX_COMPRESSION_RATIO",
    "MAX_MEMBER_BYTES",
    "TreeListing",
    "TreeReader",
    "list_tree",
    "place_files",
    "read_folder_tree",
    "read_zip_tree",
]

log = logging.getLogger(__name__)

#: Largest uncompressed zip member read; a face image is far smaller, anything bigger is a bomb or a mistake.
MAX_MEMBER_BYTES = MAX_IMAGE_BYTES
#: A member that expands more than this ratio and past `_RATIO_FLOOR` bytes is refused as a bomb
#: (images are already compressed; real ones barely shrink in a zip).
MAX_COMPRESSION_RATIO = 1000
_RATIO_FLOOR = 10 * 2**20
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Compression methods zipfile decompresses (bzip2 and lzma when Python has those modules).
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
#: What a damaged member raises while it is decompressed.
_DAMAGED = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError)


def _ignored(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _hidden(rel: str) -> bool:
    return any(_ignored(p) for p in PurePosixPath(rel).parts)


class TreeReader(Protocol):
    """Bytes of a tree's files by relative path; picklable, for worker processes."""

    def read(self, rel: str) -> bytes:
        """Raises FerlabError naming the file when it cannot be read."""


@dataclass(frozen=True)
class TreeListing:
    """Every file and folder of a tree (hidden ones and ``__MACOSX`` left out).

    Attributes:
        path: the folder or the ``.zip`` file, absolute.
        files: posix paths relative to `path` (zip: member names).
        dirs: the same for folders, so that empty class folders are seen.
        archive: True for a zip.
        clashes: zip member names held by more than one member (each name is in `files` once),
            with a description of every copy; a zip reader sees only the last copy.
    """

    path: Path
    files: list[str]
    dirs: list[str]
    archive: bool
    clashes: dict[str, list[str]] = field(default_factory=dict)

    def source(self, rel: str) -> str:
        """How a file is named in samples and messages: a path, or ``archive.zip:member``."""
        return f"{self.path}:{rel}" if self.archive else str(self.path / rel)

    def reader(self, max_bytes: int = MAX_IMAGE_BYTES) -> TreeReader:
        """Reads files of at most `max_bytes`; others raise `RefusedFile`."""
        return _ZipReader(self.path, max_bytes) if self.archive else _FolderReader(self.path, max_bytes)


def list_tree(path: Path) -> TreeListing:
    """List a folder tree or a zip archive, refusing unsafe members and symlink loops.

    Raises:
        FerlabError: the archive cannot be opened, holds an unsafe member, or a folder
            link loops back to one of its parents; the message names it.
    """
    path = Path(path).absolute()
    if path.is_file() and path.suffix.lower() == ".zip":
        return _list_zip(path)
    return _list_folder(path)


def _list_folder(root: Path) -> TreeListing:
    files: list[str] = []
    dirs: list[str] = []
    # Symlinked folders are followed; each entry carries the real paths of its ancestors so a
    # link back to one of them (a loop that would never end) is caught, while two links to the
    # same outside folder are fine.
    stack: list[tuple[Path, PurePosixPath, frozenset[str]]] = [(root, PurePosixPath(), frozenset({os.path.realpath(root)}))]
    while stack:
        folder, rel, ancestors = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            raise FerlabError(f"cannot list folder {folder}: {err}") from None
        for entry in entries:
            if _ignored(entry.name):
                continue
            child = rel / entry.name
            if entry.is_dir():  # follows symlinks
                real = os.path.realpath(entry.path)
                if real in ancestors:
                    raise FerlabError(f"symlink loop in {root}: {entry.path} leads back to {real}, which holds it")
                dirs.append(child.as_posix())
                stack.append((Path(entry.path), child, ancestors | {real}))
            else:
                files.append(child.as_posix())
    return TreeListing(root, sorted(files), sorted(dirs), archive=False)


def _check_member(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse members that could write outside a folder when extracted, or images that expand into a bomb.

    Only image members are ever decompressed, so only their sizes matter (a big CSV beside them is fine).
    """
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        raise FerlabError(f"unsafe member {name!r} in zip archive {archive}: absolute or escaping path")
    if not is_image_name(name):
        return
    if info.file_size > MAX_MEMBER_BYTES:
        raise FerlabError(
            f"refused member {name!r} in zip archive {archive}: {info.file_size / 2**20:.0f} MiB uncompressed "
            f"is above the {MAX_MEMBER_BYTES // 2**20} MiB limit (decompression bomb?)"
        )
    if info.file_size > _RATIO_FLOOR and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise FerlabError(
            f"refused member {name!r} in zip archive {archive}: it expands {info.file_size // max(info.compress_size, 1)}:1 "
            f"(decompression bomb?)"
        )


def _list_zip(path: Path) -> TreeListing:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise FerlabError(f"cannot open zip archive {path}: {err}") from None
    for info in infos:
        _check_member(info, path)
    members = [i for i in infos if not i.is_dir() and not _hidden(i.filename)]
    dirs = [i.filename.rstrip("/") for i in infos if i.is_dir() and not _hidden(i.filename)]
    copies: dict[str, list[zipfile.ZipInfo]] = collections.defaultdict(list)
    for info in members:
        copies[info.filename].append(info)
    clashes = {name: [f"copy {n} of {len(same)}: {i.file_size} bytes, CRC {i.CRC:08x}, at offset {i.header_offset}"
                      for n, i in enumerate(same, 1)]
               for name, same in copies.items() if len(same) > 1}
    return TreeListing(path, list(copies), dirs, archive=True, clashes=clashes)


def _class_label(folder: str, where: str) -> str:
    try:
        return canonical_label(folder)
    except FerlabError as err:
        raise FerlabError(f"unknown class folder {where}: {err}") from None


def _is_emotion(name: str) -> bool:
    try:
        canonical_label(name)
    except FerlabError:
        return False
    return True


def _folders(files: Iterable[PurePosixPath], dirs: Iterable[str]) -> set[PurePosixPath]:
    folders = {PurePosixPath(d) for d in dirs}
    folders.update(parent for p in files for parent in p.parents if parent != PurePosixPath("."))
    return folders


def _wrapper_prefix(paths: list[PurePosixPath], folders: set[PurePosixPath]) -> PurePosixPath:
    """Descend through single wrapper folders (e.g. a zip holding "fer2013/train/...")."""
    prefix = PurePosixPath(".")
    while True:
        tops = {f for f in folders if f.parent == prefix}
        if len(tops) != 1 or any(p.parent == prefix for p in paths):
            return prefix
        (top,) = tops
        if split_name(top.name) or _is_emotion(top.name):
            return prefix
        prefix = top


def parse_tree(files: Iterable[str], dirs: Iterable[str], root: str) -> list[tuple[str, str, str]]:
    """(relative path, label, split) of every image in a tree of posix relative paths.

    Args:
        files: relative paths of all files (hidden ones already left out, as `list_tree` does).
        dirs: relative paths of all folders (so that empty class folders are seen).
        root: shown in messages.
    """
    paths = [PurePosixPath(f) for f in files]
    folders = _folders(paths, dirs)
    prefix = _wrapper_prefix(paths, folders)
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


def place_files(files: Iterable[str], dirs: Iterable[str]) -> list[tuple[str, str, str]]:
    """(relative path, label, split) of every file, never raising: the lenient twin of `parse_tree`.

    A file outside a known class folder gets label ""; outside a split folder, split "".
    """
    paths = [PurePosixPath(f) for f in files]
    prefix = _wrapper_prefix(paths, _folders(paths, dirs))
    rows: list[tuple[str, str, str]] = []
    for p in paths:
        parts = p.parts[len(prefix.parts):]
        split = (split_name(parts[0]) or "") if len(parts) > 1 else ""
        folder = parts[1 if split else 0] if len(parts) > (2 if split else 1) else ""
        rows.append((str(p), canonical_label(folder) if folder and _is_emotion(folder) else "", split))
    return rows


def read_folder_tree(root: Path) -> SampleTable:
    """Samples of a class-folder tree on disk."""
    listing = list_tree(root)
    rows = parse_tree(listing.files, listing.dirs, str(root))
    samples = [Sample(str(root / rel), label, split) for rel, label, split in rows]
    return SampleTable(samples, lambda s: decode_image(Path(s.source), s.source), str(root))


class _FolderReader:
    """Bytes of a file in a folder tree by relative path."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def read(self, rel: str) -> bytes:
        return read_image_file(self.root / rel, max_bytes=self.max_bytes)


class _ZipReader:
    """Reads members of one archive; each process opens its own handle (zip handles don't survive fork)."""

    def __init__(self, path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._prefix = f"{path}:"
        self._handle: zipfile.ZipFile | None = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def _archive(self) -> zipfile.ZipFile:
        if self._pid != os.getpid():
            self._handle, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._handle

    def read(self, member: str) -> bytes:
        """A member's bytes; zipfile stops at the declared size `list_tree` checked, so no bomb gets past it.

        Raises:
            RefusedFile: the member is above `max_bytes`.
            FerlabError: it is missing, encrypted, compressed in a way zipfile cannot undo, or damaged.
        """
        source = f"{self._prefix}{member}"
        try:
            info = self._archive().getinfo(member)
        except (KeyError, *_DAMAGED) as err:
            raise FerlabError(f"cannot read {source}: {err}") from None
        if info.flag_bits & 0x1:
            raise FerlabError(f"cannot read {source}: the member is encrypted; ferlab reads unencrypted zips only")
        if info.compress_type not in _ZIP_METHODS:
            raise FerlabError(f"cannot read {source}: compression method {info.compress_type} is not supported "
                              "(ferlab reads stored, deflate, bzip2 and lzma members)")
        if info.file_size > self.max_bytes:
            raise too_large(source, info.file_size, self.max_bytes)
        try:
            return self._archive().read(info)
        except (RuntimeError, NotImplementedError) as err:  # encryption or a method this Python lacks
            raise FerlabError(f"cannot read {source}: {err}") from None
        except _DAMAGED as err:
            raise FerlabError(f"cannot read {source}: the member is damaged ({err})") from None

    def __call__(self, sample: Sample):
        return decode_image(self.read(sample.source[len(self._prefix):]), sample.source)


def read_zip_tree(path: Path) -> SampleTable:
    """Samples of a class-folder tree inside a zip archive; nothing is extracted.

    Raises:
        FerlabError: the archive is unsafe (see `list_tree`), or two members share a name:
            which copy is the sample would depend on the reader.
    """
    listing = list_tree(path)
    if listing.clashes:
        name, copies = next(iter(listing.clashes.items()))
        more = f" (and {len(listing.clashes) - 1} more names)" if len(listing.clashes) > 1 else ""
        raise FerlabError(f"zip archive {path} holds {len(copies)} members named {name!r}{more}: "
                          "which one to read is ambiguous; `ferlab data scan` lists them; repack it with distinct names")
    rows = parse_tree(listing.files, listing.dirs, str(path))
    samples = [Sample(f"{path}:{rel}", label, split) for rel, label, split in rows]
    return SampleTable(samples, _ZipReader(path), str(path))
