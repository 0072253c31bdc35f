"""Moving the files a scan flagged out of a dataset tree into a quarantine folder, and back.

Nothing is ever deleted or overwritten. Each file keeps its path relative to the
tree root inside the quarantine, and ``manifest.json`` there records where it came
from and its sha256, so `restore` can put every file back byte for byte.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class QuarantinedFile:
    """One file moved out of a tree.

    Attributes:
        original: where it was, absolute.
        quarantined: where it is now, absolute.
        path: its path relative to both the tree root and the quarantine folder.
        kinds, details: the findings that flagged it.
    """

    original: str
    quarantined: str
    path: str
    size: int
    sha256: str
    kinds: tuple[str, ...]
    details: tuple[str, ...]
    restored: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CleanResult:
    """What one `clean` did.

    Attributes:
        already: flagged files an earlier, interrupted clean had moved already.
    """

    quarantine: Path
    manifest: Path
    moved: list[QuarantinedFile] = field(default_factory=list)
    already: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"quarantine": str(self.quarantine), "manifest": str(self.manifest),
                "moved": [m.to_dict() for m in self.moved], "already": self.already}


@dataclass
class _Manifest:
    root: str
    entries: list[QuarantinedFile]

    def to_dict(self) -> dict[str, Any]:
        return {"format": "ferlab-quarantine", "version": 1, "root": self.root,
                "entries": [e.to_dict() for e in self.entries]}


def read_manifest(quarantine_dir: str | Path) -> tuple[str, list[QuarantinedFile]]:
    """(tree root, entries) of a quarantine folder's manifest.

    Raises:
        FerlabError: there is no manifest, or it is malformed.
    """
    path = Path(quarantine_dir).expanduser() / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [
            QuarantinedFile(**{**e, "kinds": tuple(e["kinds"]), "details": tuple(e["details"])}) for e in data["entries"]
        ]
        return data["root"], entries
    except FileNotFoundError:
        raise FerlabError(f"no quarantine manifest {path}") from None
    except OSError as err:
        raise FerlabError(f"cannot read quarantine manifest {path}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise FerlabError(f"{path} is no ferlab quarantine manifest: {err!r}") from None


def _sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest(), os.fstat(handle.fileno()).st_size


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _same_file(a: Path, b: Path) -> bool:
    """True when a move was interrupted between linking the destination and unlinking the source."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _move(src: Path, dst: Path) -> None:
    """Move without ever replacing `dst` (os.replace and shutil.move would, silently, on POSIX)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if _same_file(src, dst):
        os.unlink(src)
        return
    try:
        # A hard link is created only if dst does not exist: the no-overwrite check and the move are one step.
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise FerlabError(f"will not overwrite {dst}") from None
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise FerlabError(f"cannot move {src} to {dst}: {err}") from None
        # Another file system, or one without hard links: copy into a file created exclusively.
        try:
            with src.open("rb") as reader, dst.open("xb") as writer:
                shutil.copyfileobj(reader, writer)
                writer.flush()
                os.fsync(writer.fileno())
            shutil.copystat(src, dst)
        except FileExistsError:
            raise FerlabError(f"will not overwrite {dst}") from None
    os.unlink(src)


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
    if not (quarantine / MANIFEST).exists():
        return _Manifest(str(root), [])
    manifest_root, entries = read_manifest(quarantine)
    if manifest_root != str(root):
        raise FerlabError(f"quarantine folder {quarantine} holds files of another dataset, {manifest_root}: choose another folder")
    return _Manifest(manifest_root, entries)


def clean(report_or_path: ScanReport | str | Path, quarantine_dir: str | Path, *, kinds: Iterable[str] | None = None) -> CleanResult:
    """Move every file flagged with one of `kinds` from a folder tree into `quarantine_dir`.

    Every file is checked before any moves: it must be unchanged since the scan (same sha256)
    and its place in the quarantine must be free. Re-running after an interruption finishes the job.

    Args:
        report_or_path: a `ScanReport`, or a ``scan.json`` (or the folder holding it) that `write_report` wrote.
        quarantine_dir: created if needed; must lie outside the tree.
        kinds: finding kinds to move; default `DEFAULT_KINDS`.

    Raises:
        FerlabError: the tree is a zip, the quarantine lies inside the tree, a destination exists,
            or a flagged file is gone or changed since the scan; nothing has moved then.
    """
    report = report_or_path if isinstance(report_or_path, ScanReport) else load_report(report_or_path)
    chosen = _kinds(kinds)
    root = Path(report.root)
    if report.archive:
        raise FerlabError(f"cannot clean zip archive {root} in place: extract it to a folder, then scan and clean that folder")
    if not root.is_dir():
        raise FerlabError(f"scanned folder {root} no longer exists")
    quarantine = Path(quarantine_dir).expanduser().absolute()
    _check_apart(root, quarantine)
    manifest = _open_manifest(quarantine, root)
    pending = {e.original: i for i, e in enumerate(manifest.entries) if not e.restored}
    flagged: dict[str, list[Finding]] = {}
    for finding in report.findings:
        if finding.kind in chosen:
            flagged.setdefault(finding.source, []).append(finding)
    result = CleanResult(quarantine, quarantine / MANIFEST)
    plan: list[QuarantinedFile] = []
    for source, found in sorted(flagged.items()):
        original = Path(source)
        try:
            rel = original.relative_to(root)
        except ValueError:
            raise FerlabError(f"scan report names {original}, outside its tree {root}") from None
        target = quarantine / rel
        if source in pending and not _exists(original) and _exists(target):
            result.already += 1
            continue
        if not _exists(original):
            raise FerlabError(f"{original}, flagged by the scan, is gone: scan {root} again")
        if _exists(target) and not _same_file(original, target):
            raise FerlabError(f"will not overwrite {target} in the quarantine: restore it or move it away first")
        digest, size = _sha256(original)
        if found[0].sha256 and digest != found[0].sha256:
            raise FerlabError(f"{original} changed since the scan: scan {root} again")
        plan.append(QuarantinedFile(str(original), str(target), rel.as_posix(), size, digest,
                                    tuple(f.kind for f in found), tuple(f.detail for f in found)))
    for start in range(0, len(plan), _BATCH):
        batch = plan[start:start + _BATCH]
        for item in batch:
            if item.original in pending:  # recorded by an interrupted clean that never moved it
                manifest.entries[pending[item.original]] = item
            else:
                manifest.entries.append(item)
        write_json(result.manifest, manifest.to_dict())
        for item in batch:
            _move(Path(item.original), Path(item.quarantined))
            result.moved.append(item)
    log.info("moved %d files from %s to %s", len(result.moved), root, quarantine)
    return result


def restore(quarantine_dir: str | Path) -> list[Path]:
    """Put every quarantined file back where it was, and mark it restored in the manifest.

    Every file is checked before any moves: its sha256 must match the manifest, and
    nothing may have reappeared at its original path.

    Returns:
        The original paths of the files put back.

    Raises:
        FerlabError: a quarantined file is missing or changed, or its original path is taken;
            nothing has moved then.
    """
    quarantine = Path(quarantine_dir).expanduser().absolute()
    root, entries = read_manifest(quarantine)
    manifest = _Manifest(root, entries)
    plan: list[int] = []
    for i, entry in enumerate(entries):
        if entry.restored:
            continue
        src, dst = quarantine / entry.path, Path(entry.original)
        if not _exists(src):
            # Never moved (an interrupted clean), or moved back by an interrupted restore.
            if _exists(dst) and _sha256(dst)[0] == entry.sha256:
                entries[i] = replace(entry, restored=True)
                continue
            raise FerlabError(f"{src} is missing from the quarantine, and {dst} is not back either")
        if _exists(dst) and not _same_file(src, dst):
            raise FerlabError(f"will not overwrite {dst}, which reappeared since it was quarantined: move it away, then restore")
        if _sha256(src)[0] != entry.sha256:
            raise FerlabError(f"{src} changed in the quarantine (sha256 differs from {MANIFEST}): not restoring it")
        plan.append(i)
    restored: list[Path] = []
    for start in range(0, len(plan), _BATCH):
        for i in plan[start:start + _BATCH]:
            entry = entries[i]
            _move(quarantine / entry.path, Path(entry.original))
            entries[i] = replace(entry, restored=True)
            restored.append(Path(entry.original))
        write_json(quarantine / MANIFEST, manifest.to_dict())
    if not plan:  # entries found back in place were marked above
        write_json(quarantine / MANIFEST, manifest.to_dict())
    log.info("restored %d files from %s", len(restored), quarantine)
    return restored
