"""Moving the files a scan flagged out of a dataset tree into a quarantine folder, and back.

Nothing is ever deleted or overwritten. Each file keeps its path relative to the
tree root inside the quarantine, and ``manifest.json`` there records where it came
from and its sha256, so `restore` can put every file back byte for byte. A symlink
moves as a link: in the quarantine it points at the same target, and it comes back
with its own text. Special files (FIFOs, devices) are never moved.

`restore` trusts nothing in the manifest: an entry must name a path inside the tree
root and inside the quarantine (no ``..``, no hidden folder, which clean never
touches, no symlinked folder in the quarantine), and a file with the recorded
sha256 (a link: the recorded text). An entry without a sha256 (ferlab always
writes one; such a manifest is hand-made or damaged) is refused, and so is the
whole restore then.

Between file systems a move copies to a hidden ``.NAME.ferlab-partial`` beside its
destination, syncs and checks it, unlinks the source, then renames it into place.
A run killed at any point is finished or rolled back by the next clean or restore.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ferlab._io import write_json
from ferlab.data.scan import KINDS, Finding, ScanReport, load_report
from ferlab.errors import FerlabError

__all__ = ["DEFAULT_KINDS", "MANIFEST", "CleanResult", "QuarantinedFile", "clean", "read_manifest", "restore"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: What `clean` moves unless told otherwise; near duplicates and misplaced images need a person to decide.
DEFAULT_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in ("near_duplicate", "near_leak", "misplaced"))
#: Manifest entries are written before their files move, this many at a time: an interruption then
#: leaves at most entries whose move never happened (restore skips those), never a file unrecorded.
_BATCH = 100
_PARTIAL = ".ferlab-partial"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Errors of os.link that mean "no hard link here" (another file system, or none on this one).
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK)
_READ = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class QuarantinedFile:
    """One file moved out of a tree.

    Attributes:
        original: where it was, absolute.
        quarantined: where it is now, absolute.
        path: its path relative to both the tree root and the quarantine folder.
        sha256: of the file's bytes; for a symlink, of its text.
        kinds, details: the findings that flagged it.
        link: a symlink's own text ("" for a file).
    """

    original: str
    quarantined: str
    path: str
    size: int
    sha256: str
    kinds: tuple[str, ...]
    details: tuple[str, ...]
    restored: bool = False
    link: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleanResult:
    """What one `clean` did.

    Attributes:
        already: flagged files an earlier, interrupted clean had moved already.
        left: flagged special files (FIFOs, devices) left where they are: clean moves files and links only.
    """

    quarantine: Path
    manifest: Path
    moved: list[QuarantinedFile] = field(default_factory=list)
    already: int = 0
    left: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"quarantine": str(self.quarantine), "manifest": str(self.manifest),
                "moved": [m.to_dict() for m in self.moved], "already": self.already, "left": self.left}


@dataclass
class _Manifest:
    root: str
    entries: list[QuarantinedFile]

    def to_dict(self) -> dict[str, Any]:
        return {"format": "ferlab-quarantine", "version": 2, "root": self.root,
                "entries": [e.to_dict() for e in self.entries]}


def read_manifest(quarantine_dir: str | Path) -> tuple[str, list[QuarantinedFile]]:
    """(tree root, entries) of a quarantine folder's manifest, every entry checked (see the module docstring).

    Raises:
        FerlabError: there is no manifest, or it is malformed or names a place clean never writes to.
    """
    path = Path(quarantine_dir).expanduser().absolute() / MANIFEST
    if _exists(path) and not path.is_file():  # a FIFO would hang the read
        raise FerlabError(f"quarantine manifest {path} is not a regular file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != "ferlab-quarantine" or data.get("version") not in (1, 2):
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        root, entries = data["root"], [_parse_entry(e, path) for e in data["entries"]]
    except FileNotFoundError:
        raise FerlabError(f"no quarantine manifest {path}") from None
    except OSError as err:
        raise FerlabError(f"cannot read quarantine manifest {path}: {err}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FerlabError(f"{path} is no ferlab quarantine manifest: {err!r}") from None
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise FerlabError(f"{path} is no ferlab quarantine manifest: its root {root!r} is no absolute path")
    for entry in entries:
        _check_entry(entry, root, path)
    return root, entries


def _parse_entry(data: dict[str, Any], manifest: Path) -> QuarantinedFile:
    if not data.get("sha256"):
        raise FerlabError(f"{manifest}: entry {data.get('path')!r} has no sha256, so restore cannot tell it is the "
                          "file that was quarantined; restoring nothing (put such files back by hand)")
    return QuarantinedFile(**{**data, "kinds": tuple(data["kinds"]), "details": tuple(data["details"])})


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _check_entry(entry: QuarantinedFile, root: str, manifest: Path) -> None:
    """Refuse entries that clean never writes: outside the tree, through ``..``, hidden, or a bad sha256."""
    rel = PurePosixPath(entry.path)
    where = f"{manifest}: entry {entry.path!r}"
    if not entry.path or rel.is_absolute() or any(_hidden(p) for p in rel.parts):
        raise FerlabError(f"{where} is no plain path inside the tree (absolute, '..' or hidden): restoring nothing")
    if entry.original != str(Path(root) / rel):
        raise FerlabError(f"{where} says it came from {entry.original}, which is not {root}/{rel}: restoring nothing")
    if not _SHA256.fullmatch(entry.sha256) or (entry.link and _text_sha256(entry.link) != entry.sha256):
        raise FerlabError(f"{where} has a malformed sha256 {entry.sha256!r}: restoring nothing")


def _check_inside(quarantine: Path, path: Path, manifest: Path) -> None:
    """Refuse a place in the quarantine reached through a symlinked folder (it could lead anywhere)."""
    real_quarantine = Path(os.path.realpath(quarantine))
    real = Path(os.path.realpath(path.parent))
    if real != real_quarantine and real_quarantine not in real.parents:
        raise FerlabError(f"{manifest}: {path} leads out of the quarantine through a symlinked folder "
                          f"(to {real}): moving nothing")


def _text_sha256(text: str) -> str:
    return hashlib.sha256(os.fsencode(text)).hexdigest()


def _sha256(path: Path, follow: bool = False) -> str:
    """sha256 of a regular file, "" for anything else (a link unless `follow`, a FIFO: never opened)."""
    try:
        if not stat.S_ISREG(os.stat(path, follow_symlinks=follow).st_mode):
            return ""
        fd = os.open(path, _READ | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise FerlabError(f"cannot read {path}: {err.strerror or err}") from None
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat
            return ""
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _same_file(a: Path, b: Path) -> bool:
    """True when a move was interrupted between linking the destination and unlinking the source."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _holds(path: Path, sha256: str, link: str = "") -> bool:
    """Whether `path` is the symlink with text `link`, or (no link) the regular file with this sha256."""
    if link:
        return os.path.islink(path) and os.readlink(path) == link
    return _sha256(path) == sha256


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}{_PARTIAL}")


def _parked(entry: QuarantinedFile) -> str:
    """A quarantined link's text: the link's own target, as seen from anywhere (join keeps an absolute one)."""
    return os.path.join(os.path.dirname(entry.original), entry.link)


class _Move(NamedTuple):
    """`src` to `dst`; `link`: the text of the symlink to make at `dst` ("" moves a file with this sha256)."""

    src: Path
    dst: Path
    sha256: str
    link: str = ""


def _outward(entry: QuarantinedFile, quarantine: Path) -> _Move:
    return _Move(Path(entry.original), quarantine / entry.path, entry.sha256, _parked(entry) if entry.link else "")


def _homeward(entry: QuarantinedFile, quarantine: Path) -> _Move:
    return _Move(quarantine / entry.path, Path(entry.original), entry.sha256, entry.link)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some platforms and file systems cannot open or sync folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _place(partial: Path, dst: Path) -> None:
    """Rename a complete partial to `dst` without ever replacing `dst` (os.rename would, silently)."""
    try:
        os.link(partial, dst, follow_symlinks=False)
    except FileExistsError:
        raise FerlabError(f"will not overwrite {dst}, which appeared during the move; the file is whole in {partial}") from None
    except OSError as err:
        if err.errno not in _NO_LINK or _exists(dst):
            raise FerlabError(f"cannot rename {partial} to {dst}: {err}") from None
        os.rename(partial, dst)  # no hard links on this file system; dst was checked free just now
    else:
        os.unlink(partial)
    _fsync_dir(dst.parent)


def _copy(src: Path, partial: Path, sha256: str) -> None:
    """Copy `src` into `partial` (created exclusively), synced to disk and checked against `sha256`."""
    try:
        with open(os.open(src, _READ | getattr(os, "O_NOFOLLOW", 0)), "rb") as reader, partial.open("xb") as writer:
            shutil.copyfileobj(reader, writer)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(src, partial)
    except OSError as err:
        raise FerlabError(f"cannot copy {src} to {partial}: {err}") from None
    if _sha256(partial) != sha256:
        os.unlink(partial)  # our own copy, and wrong: the source is untouched
        raise FerlabError(f"copying {src} to {partial.parent} gave other bytes (sha256 differs): nothing moved")


def _move(move: _Move) -> None:
    """Move without ever replacing `dst`; whenever it stops, one whole copy keeps a name `_finish` knows."""
    src, dst = move.src, move.dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    if _same_file(src, dst):  # hard-linked by a run killed before it unlinked the source
        os.unlink(src)
        return
    if not move.link:
        try:
            # A hard link is created only if dst does not exist: the no-overwrite check and the move are one step.
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            raise FerlabError(f"will not overwrite {dst}") from None
        except OSError as err:
            if err.errno not in _NO_LINK:
                raise FerlabError(f"cannot move {src} to {dst}: {err}") from None
            _copy(src, _partial(dst), move.sha256)  # another file system
        else:
            os.unlink(src)
            return
    else:
        try:
            os.symlink(move.link, _partial(dst))
        except OSError as err:
            raise FerlabError(f"cannot make the link {_partial(dst)}: {err}") from None
    _fsync_dir(dst.parent)
    os.unlink(src)
    _place(_partial(dst), dst)


def _finish(move: _Move) -> None:
    """Roll back or complete a `_move` that was killed while a partial existed."""
    partial = _partial(move.dst)
    if not _exists(partial):
        return
    if _exists(move.src) or _same_file(partial, move.dst):
        os.unlink(partial)  # the source is still whole, or the rename was done: the partial is a spare
    elif not _exists(move.dst) and _holds(partial, move.sha256, move.link):
        _place(partial, move.dst)  # the source was unlinked after the partial was checked complete
    else:
        raise FerlabError(f"{partial} was left by an interrupted move, but is not the file {MANIFEST} records, and "
                          f"{move.src} is gone: leaving both as they are; compare {partial} with {move.dst} by hand")


def _finish_interrupted(entries: list[QuarantinedFile], quarantine: Path) -> None:
    """Finish every move a killed clean or restore left half done, before anything is checked."""
    for entry in entries:
        if not entry.restored:
            _finish(_outward(entry, quarantine))
            _finish(_homeward(entry, quarantine))


def _kinds(kinds: Iterable[str] | None) -> set[str]:
    chosen = set(DEFAULT_KINDS if kinds is None else kinds)
    unknown = sorted(chosen - set(KINDS))
    if unknown:
        raise FerlabError(f"unknown finding kinds {unknown}: expected some of {', '.join(KINDS)}")
    return chosen


def _check_apart(root: Path, quarantine: Path) -> None:
    real_root, real_quarantine = root.resolve(), quarantine.resolve()
    if real_quarantine == real_root or real_root in real_quarantine.parents:
        raise FerlabError(f"quarantine folder {quarantine} is inside the dataset {root}: choose a folder outside it")
    if real_quarantine in real_root.parents:
        raise FerlabError(f"quarantine folder {quarantine} holds the dataset {root}: choose a folder beside it")


def _open_manifest(quarantine: Path, root: Path) -> _Manifest:
    if not _exists(quarantine / MANIFEST):
        return _Manifest(str(root), [])
    manifest_root, entries = read_manifest(quarantine)
    if manifest_root != str(root):
        raise FerlabError(f"quarantine folder {quarantine} holds files of another dataset, {manifest_root}: choose another folder")
    for entry in entries:
        _check_inside(quarantine, quarantine / entry.path, quarantine / MANIFEST)
    return _Manifest(manifest_root, entries)


def _plan_entry(root: Path, rel: PurePosixPath, target: Path, found: list[Finding]) -> QuarantinedFile | None:
    """The entry that moves ``root / rel``, checked unchanged since the scan; None for a special file."""
    original = root / rel
    status = original.lstat()
    if stat.S_ISLNK(status.st_mode):
        link = os.readlink(original)
        digest, size = _text_sha256(link), len(os.fsencode(link))
        content = _sha256(original, follow=True) if found[0].sha256 else ""
    elif stat.S_ISREG(status.st_mode):
        link, digest, size = "", _sha256(original), status.st_size
        content = digest
    else:
        return None
    if found[0].sha256 and content != found[0].sha256:
        raise FerlabError(f"{original} changed since the scan: scan {root} again")
    return QuarantinedFile(str(original), str(target), rel.as_posix(), size, digest,
                           tuple(f.kind for f in found), tuple(f.detail for f in found), link=link)


def _plan_clean(report: ScanReport, chosen: set[str], manifest: _Manifest, quarantine: Path,
                result: CleanResult) -> list[QuarantinedFile]:
    """Check every flagged file before any moves; count those moved already, note special files left."""
    root = Path(report.root)
    pending = {e.original for e in manifest.entries if not e.restored}
    flagged: dict[str, list[Finding]] = {}
    for finding in report.findings:
        if finding.kind in chosen:
            flagged.setdefault(finding.source, []).append(finding)
    plan: list[QuarantinedFile] = []
    for source, found in sorted(flagged.items()):
        original = Path(source)
        try:
            rel = PurePosixPath(original.relative_to(root).as_posix())
        except ValueError:
            raise FerlabError(f"scan report names {original}, outside its tree {root}") from None
        target = quarantine / rel
        _check_inside(quarantine, target, result.manifest)
        if source in pending and not _exists(original) and _exists(target):
            result.already += 1
            continue
        if not _exists(original):
            raise FerlabError(f"{original}, flagged by the scan, is gone: scan {root} again")
        if _exists(target) and not _same_file(original, target):
            raise FerlabError(f"will not overwrite {target} in the quarantine: restore it or move it away first")
        entry = _plan_entry(root, rel, target, found)
        if entry is None:
            result.left.append(source)
        else:
            plan.append(entry)
    return plan


def clean(
    report_or_path: ScanReport | str | Path,
    quarantine_dir: str | Path,
    *,
    kinds: Iterable[str] | None = None,
    tree: str | Path | None = None,
) -> CleanResult:
    """Move every file flagged with one of `kinds` from a folder tree into `quarantine_dir`.

    Every file is checked before any moves: it must be unchanged since the scan (same sha256)
    and its place in the quarantine must be free. Re-running after an interruption finishes the job.

    Args:
        report_or_path: a `ScanReport`, or a ``scan.json`` (or the folder holding it) that `write_report` wrote.
        quarantine_dir: created if needed; must lie outside the tree.
        kinds: finding kinds to move; default `DEFAULT_KINDS`.
        tree: the folder the caller means to clean; a report of another tree is refused.

    Raises:
        FerlabError: the tree is a zip or not `tree`, the quarantine lies inside the tree, a destination
            exists, or a flagged file is gone or changed since the scan; nothing has moved then.
    """
    report = report_or_path if isinstance(report_or_path, ScanReport) else load_report(report_or_path)
    chosen = _kinds(kinds)
    root = Path(report.root)
    if report.archive:
        raise FerlabError(f"cannot clean zip archive {root} in place: extract it to a folder, then scan and clean that folder")
    if tree is not None and os.path.realpath(Path(tree).expanduser()) != os.path.realpath(root):
        raise FerlabError(f"the scan report is of {root}, not of {tree}: scan {tree} (or clean without --report), "
                          f"or clean {root}")
    if not root.is_dir():
        raise FerlabError(f"scanned folder {root} no longer exists")
    quarantine = Path(quarantine_dir).expanduser().absolute()
    _check_apart(root, quarantine)
    manifest = _open_manifest(quarantine, root)
    _finish_interrupted(manifest.entries, quarantine)
    result = CleanResult(quarantine, quarantine / MANIFEST)
    plan = _plan_clean(report, chosen, manifest, quarantine, result)
    pending = {e.original: i for i, e in enumerate(manifest.entries) if not e.restored}
    for start in range(0, len(plan), _BATCH):
        batch = plan[start:start + _BATCH]
        for item in batch:
            if item.original in pending:  # recorded by an interrupted clean that never moved it
                manifest.entries[pending[item.original]] = item
            else:
                manifest.entries.append(item)
        write_json(result.manifest, manifest.to_dict())
        for item in batch:
            _move(_outward(item, quarantine))
            result.moved.append(item)
    if result.left:
        log.warning("left %d special files (FIFOs, devices) in place, e.g. %s", len(result.left), result.left[0])
    log.info("moved %d files from %s to %s", len(result.moved), root, quarantine)
    return result


def _legacy_link(entry: QuarantinedFile, src: Path, manifest: Path) -> QuarantinedFile:
    """An entry from before links were recorded: that clean moved a symlink as it was, text unchanged.

    Its sha256 is of what the link showed, so the link is checked by reading its target from its original place.
    """
    text = os.readlink(src)
    if _sha256(Path(os.path.dirname(entry.original), text), follow=True) != entry.sha256:
        raise FerlabError(f"{manifest}: {src} is a symlink to {text}, which from {entry.original} is not the file "
                          "quarantined (sha256 differs): not restoring it")
    return replace(entry, link=text, sha256=_text_sha256(text))


def _plan_restore(quarantine: Path, entries: list[QuarantinedFile]) -> list[int]:
    """Indices of the entries to move back, every one checked; entries found back in place are marked restored."""
    manifest = quarantine / MANIFEST
    plan: list[int] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.restored:
            continue
        if entry.path in seen:
            raise FerlabError(f"{manifest}: entry {entry.path!r} is listed twice as quarantined: restoring nothing")
        seen.add(entry.path)
        src, dst = quarantine / entry.path, Path(entry.original)
        if not _exists(src):
            # Never moved (an interrupted clean), or moved back by an interrupted restore.
            if _holds(dst, entry.sha256, entry.link):
                entries[i] = replace(entry, restored=True)
                continue
            raise FerlabError(f"{src} is missing from the quarantine, and {dst} is not back either")
        if _same_file(src, dst):  # hard-linked back by a restore killed before it unlinked the quarantined name
            plan.append(i)
            continue
        if not entry.link and os.path.islink(src):
            entries[i] = entry = _legacy_link(entry, src, manifest)
        elif not _holds(src, entry.sha256, _parked(entry) if entry.link else ""):
            if _holds(dst, entry.sha256, entry.link):
                raise FerlabError(f"{src} is an incomplete copy of {dst}, left by an interrupted clean (its sha256 "
                                  f"differs from {MANIFEST}); {dst} is intact: delete the copy {src}, then restore")
            raise FerlabError(f"{src} changed in the quarantine (sha256 differs from {MANIFEST}): not restoring it")
        if _exists(dst):
            raise FerlabError(f"will not overwrite {dst}, which reappeared since it was quarantined: move it out of "
                              f"the tree (the quarantined copy {src} is intact), then restore")
        plan.append(i)
    return plan


def restore(quarantine_dir: str | Path) -> list[Path]:
    """Put every quarantined file back where it was, and mark it restored in the manifest.

    Every entry is checked before any moves (see the module docstring): its sha256 must match
    the manifest, its place must lie inside the tree, and nothing may have reappeared there.

    Returns:
        The original paths of the files put back.

    Raises:
        FerlabError: the manifest names a place outside the tree or the quarantine, or a
            quarantined file is missing or changed, or its original path is taken; nothing has moved then.
    """
    quarantine = Path(quarantine_dir).expanduser().absolute()
    root, entries = read_manifest(quarantine)
    for entry in entries:
        _check_inside(quarantine, quarantine / entry.path, quarantine / MANIFEST)
    if not Path(root).is_dir():
        raise FerlabError(f"{quarantine / MANIFEST}: its dataset folder {root} is gone: recreate it (empty), then restore")
    manifest = _Manifest(root, entries)
    _finish_interrupted(entries, quarantine)
    plan = _plan_restore(quarantine, entries)
    restored: list[Path] = []
    for start in range(0, len(plan), _BATCH):
        for i in plan[start:start + _BATCH]:
            entry = entries[i]
            _move(_homeward(entry, quarantine))
            entries[i] = replace(entry, restored=True)
            restored.append(Path(entry.original))
        write_json(quarantine / MANIFEST, manifest.to_dict())
    if not plan:  # entries found back in place were marked above
        write_json(quarantine / MANIFEST, manifest.to_dict())
    log.info("restored %d files from %s", len(restored), quarantine)
    return restored
