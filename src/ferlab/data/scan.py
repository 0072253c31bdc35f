"""Scanning a class-folder tree for files that would break or bias training and evaluation.

Unlike reading, a scan never stops at a bad file: it looks at every file of the
tree (the listing `trees.list_tree` gives reading too) and reports what it finds,
so one run shows every problem, and `ferlab.data.quarantine.clean` can act on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ferlab._io import write_json, write_text
from ferlab.data.images import (
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    MAX_IMAGE_BYTES,
    RefusedFile,
    is_image_name,
    perceptual_hash,
)
from ferlab.data.trees import TreeListing, TreeReader, list_tree, place_files
from ferlab.errors import FerlabError

__all__ = ["KINDS", "DuplicateGroup", "Finding", "ScanReport", "format_report", "load_report", "scan", "write_report"]

log = logging.getLogger(__name__)

#: Every finding kind with its severity: errors break reading or corrupt an evaluation, warnings need a look.
KINDS: dict[str, str] = {
    "zero_byte": "error",
    "not_image": "error",
    "truncated": "error",
    "unsupported_format": "error",
    "unreadable": "error",
    "not_regular": "error",
    "too_large": "error",
    "duplicate_name": "error",
    "leak": "error",
    "duplicate": "warning",
    "too_small": "warning",
    "unexpected_mode": "warning",
    "blank": "warning",
    "misplaced": "warning",
    "near_duplicate": "warning",
    "near_leak": "warning",
}

_EXPLAIN = {
    "zero_byte": "empty files",
    "not_image": "Pillow cannot identify these as images",
    "truncated": "identified, but they fail to decode fully",
    "unsupported_format": "not one of the image formats ferlab reads",
    "unreadable": "the file system or archive would not give their bytes",
    "not_regular": "FIFOs, devices and other special files (or links to them): never read, so they cannot hang a reader",
    "too_large": "above the size cap (--max-bytes): not read",
    "duplicate_name": "zip members sharing one name: a zip reader sees only the last copy, so reading refuses the archive",
    "leak": "byte-identical to a file in another split: the evaluation copy is kept, this one flagged",
    "duplicate": "byte-identical to another file of the same split (the first, by path, is kept)",
    "too_small": "shorter side below the minimum size",
    "unexpected_mode": "neither grayscale (L) nor RGB; conversion may drop alpha or rescale values",
    "blank": "one flat colour, no face to see (FER2013 has a few all-black crops)",
    "misplaced": "images outside a known class folder: reading skips them or refuses the folder",
    "near_duplicate": "look like another image of the same split (perceptual hash); check by eye",
    "near_leak": "look like an image in another split (perceptual hash): possible leakage; check by eye",
}

#: Modes that every transform handles without loss.
_MODES = ("L", "RGB")
#: Which copy of a duplicate is kept: the evaluation split's, so cleaning never shrinks a test set.
_KEEP_ORDER = {"test": 0, "val": 1, "train": 2, "": 3}
#: Images whose gray levels span at most this many steps carry no face.
_BLANK_RANGE = 2
#: Below this many files, starting worker processes costs more than the scan.
_PARALLEL_MIN = 500


@dataclass(frozen=True)
class Finding:
    """One problem with one file.

    Attributes:
        source: the file, as a path or ``archive.zip:member``.
        kind: one of `KINDS`.
        detail: what exactly is wrong, for people.
        split: the file's split ("" when unsplit or outside a split folder).
        label: the file's class ("" when outside a known class folder).
        sha256: the file's content hash when it was read, so cleaning can tell it has not changed since.
    """

    source: str
    kind: str
    detail: str
    split: str = ""
    label: str = ""
    sha256: str = ""

    @property
    def severity(self) -> str:
        return KINDS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity}


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with the same bytes ("exact") or that look alike ("near"); the kept copy comes first.

    Attributes:
        distance: the largest Hamming distance (of 64 bits) between linked members; 0 for exact groups.
    """

    kind: str
    sources: tuple[str, ...]
    splits: tuple[str, ...]
    labels: tuple[str, ...]
    distance: int = 0

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cross_split": self.cross_split}


@dataclass
class ScanReport:
    """Everything one scan found.

    Attributes:
        root: the scanned folder or zip, absolute.
        archive: True for a zip (which cannot be cleaned in place).
        files: files looked at (hidden files and ``__MACOSX`` are not).
        images: files that decoded fully.
    """

    root: str
    archive: bool
    files: int
    images: int
    seconds: float
    min_size: int
    near_threshold: int
    findings: list[Finding] = field(default_factory=list)
    groups: list[DuplicateGroup] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Findings per kind, every kind listed."""
        counts = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            counts[finding.kind] += 1
        return counts

    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root, "archive": self.archive, "files": self.files, "images": self.images,
            "seconds": self.seconds, "min_size": self.min_size, "near_threshold": self.near_threshold,
            "errors": self.errors(), "warnings": self.warnings(), "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
            "groups": [g.to_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanReport:
        fields = ("source", "kind", "detail", "split", "label", "sha256")
        return cls(
            root=data["root"], archive=data["archive"], files=data["files"], images=data["images"],
            seconds=data["seconds"], min_size=data["min_size"], near_threshold=data["near_threshold"],
            findings=[Finding(**{k: f[k] for k in fields}) for f in data["findings"]],
            groups=[
                DuplicateGroup(g["kind"], tuple(g["sources"]), tuple(g["splits"]), tuple(g["labels"]), g["distance"])
                for g in data["groups"]
            ],
        )


def load_report(path: str | Path) -> ScanReport:
    """A report that `write_report` saved: its ``scan.json``, or the folder holding it.

    Raises:
        FerlabError: the file is missing or no scan report.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "scan.json"
    try:
        return ScanReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as err:
        raise FerlabError(f"cannot read scan report {path}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise FerlabError(f"{path} is no ferlab scan report: {err!r}") from None


class _Inspected(NamedTuple):
    """What a worker learnt about one file; phash is None unless the image decoded fully."""

    rel: str
    sha256: str
    phash: int | None
    problems: tuple[tuple[str, str], ...]


def _inspect(reader: TreeReader, rel: str, min_size: int) -> _Inspected:
    if not is_image_name(rel):
        # Not read: only image members pass the zip bomb checks, and a big CSV need not be hashed.
        suffix = PurePosixPath(rel).suffix or "(none)"
        detail = f"extension {suffix} is no image format ({' '.join(sorted(IMAGE_EXTENSIONS))})"
        return _Inspected(rel, "", None, (("unsupported_format", detail),))
    try:
        data = reader.read(rel)
    except RefusedFile as err:
        return _Inspected(rel, "", None, ((err.kind, str(err)),))
    except FerlabError as err:
        return _Inspected(rel, "", None, (("unreadable", str(err)),))
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return _Inspected(rel, digest, None, (("zero_byte", "empty file"),))
    problems: list[tuple[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            return _Inspected(rel, digest, None, (("not_image", f"refused as a decompression bomb: {err}"),))
        except Image.UnidentifiedImageError:  # its message names a BytesIO, not the file
            return _Inspected(rel, digest, None, (("not_image", "Pillow cannot identify it as an image"),))
        except (OSError, ValueError, SyntaxError) as err:
            return _Inspected(rel, digest, None, (("not_image", f"Pillow cannot open it: {err}"),))
        if image.format not in IMAGE_FORMATS:
            formats = " ".join(sorted(IMAGE_FORMATS))
            problems.append(("unsupported_format", f"{image.format} image; ferlab reads {formats}"))
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            problems.append(("truncated", f"{image.format} {image.size[0]}x{image.size[1]} fails to decode: {err}"))
            return _Inspected(rel, digest, None, tuple(problems))
    if image.mode not in _MODES:
        problems.append(("unexpected_mode", f"mode {image.mode}; expected L or RGB"))
    if min(image.size) < min_size:
        problems.append(("too_small", f"{image.size[0]}x{image.size[1]}, shorter side below {min_size}"))
    low, high = _gray_range(image)
    if high - low <= _BLANK_RANGE:
        problems.append(("blank", f"every pixel lies in gray levels {low}-{high}"))
    try:
        phash = perceptual_hash(image)
    except (OSError, ValueError) as err:  # a mode Pillow cannot convert to L
        log.debug("no perceptual hash for %s: %s", rel, err)
        phash = None
    return _Inspected(rel, digest, phash, tuple(problems))


def _gray_range(image: Image.Image) -> tuple[int, int]:
    """Darkest and brightest gray level; (0, 255) when the mode cannot be converted (not flagged as blank)."""
    try:
        return image.convert("L").getextrema()
    except (OSError, ValueError):
        return 0, 255


def _inspect_chunk(reader: TreeReader, rels: Sequence[str], min_size: int) -> list[_Inspected]:
    return [_inspect(reader, rel, min_size) for rel in rels]


def _inspect_all(listing: TreeListing, min_size: int, max_bytes: int, progress: bool,
                 workers: int | None) -> list[_Inspected]:
    """Read and decode every file, in worker processes for big trees (each opens its own zip handle)."""
    rels = listing.files
    if workers is None:
        workers = (os.cpu_count() or 1) if len(rels) >= _PARALLEL_MIN else 1
    size = min(max(len(rels) // (workers * 16), 16), 512)
    chunks = [rels[i:i + size] for i in range(0, len(rels), size)]
    reader = listing.reader(max_bytes)
    results: list[_Inspected] = []
    bar = tqdm(total=len(rels), desc=f"scanning {listing.path.name}", unit="file",
               disable=None if progress else True, leave=False)
    with bar:
        if workers <= 1:
            for chunk in chunks:
                results += _inspect_chunk(reader, chunk, min_size)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(_inspect_chunk, reader, chunk, min_size): len(chunk) for chunk in chunks}
                for future in as_completed(futures):
                    results += future.result()
                    bar.update(futures[future])
    return sorted(results, key=lambda r: r.rel)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1, dtype=np.uint8)


def _near_pairs(hashes: np.ndarray, threshold: int, chunk: int = 256) -> list[tuple[int, int, int]]:
    """(i, j, distance) of every pair i < j of 64-bit hashes at most `threshold` bits apart.

    Compares blocks of rows against the rest, vectorised: 35k hashes take 1-2 s on one core, and a
    (chunk, n) block of uint64 keeps memory small (256 x 35k is 72 MB).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(hashes), chunk):
        dist = _popcount(hashes[start:start + chunk, None] ^ hashes[None, start:])  # (chunk, n - start)
        i, j = np.nonzero(dist <= threshold)
        upper = j > i  # j counts from `start`, so this is i < j overall, each pair once
        pairs += zip((i[upper] + start).tolist(), (j[upper] + start).tolist(), dist[i[upper], j[upper]].tolist())
    return pairs


def _components(n: int, pairs: list[tuple[int, int, int]]) -> list[list[int]]:
    """Connected components (size > 1) of the graph whose edges are `pairs` (union-find)."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j, _ in pairs:
        parent[find(i)] = find(j)
    members: dict[int, list[int]] = defaultdict(list)
    for a in sorted({x for i, j, _ in pairs for x in (i, j)}):
        members[find(a)].append(a)
    return list(members.values())  # every node here is in a pair, so no singletons


class _File(NamedTuple):
    source: str
    split: str
    label: str
    sha256: str
    phash: int


def _keep_order(f: _File) -> tuple[int, str]:
    return _KEEP_ORDER.get(f.split, 3), f.source


def _group(kind: str, files: list[_File], distance: int = 0) -> DuplicateGroup:
    return DuplicateGroup(kind, tuple(f.source for f in files), tuple(f.split for f in files),
                          tuple(f.label for f in files), distance)


def _duplicates(decoded: list[_File], near_threshold: int) -> tuple[list[Finding], list[DuplicateGroup]]:
    """Exact groups by content hash, then near groups by perceptual hash among the kept copies."""
    findings: list[Finding] = []
    groups: list[DuplicateGroup] = []
    by_content: dict[str, list[_File]] = defaultdict(list)
    for f in decoded:
        by_content[f.sha256].append(f)
    kept: list[_File] = []
    for copies in by_content.values():
        copies.sort(key=_keep_order)
        keep = copies[0]
        kept.append(keep)
        if len(copies) == 1:
            continue
        groups.append(_group("exact", copies))
        for f in copies[1:]:
            kind = "duplicate" if f.split == keep.split else "leak"
            where = f" in {keep.split or 'no split'}" if kind == "leak" else ""
            conflict = f"; labelled {keep.label} there, {f.label} here" if f.label != keep.label else ""
            detail = f"same bytes as {keep.source}{where}{conflict}"
            findings.append(Finding(f.source, kind, detail, f.split, f.label, f.sha256))
    if near_threshold < 0:
        return findings, groups
    kept.sort(key=lambda f: f.source)
    hashes = np.array([f.phash for f in kept], dtype=np.uint64)
    pairs = _near_pairs(hashes, near_threshold)
    linked: dict[int, int] = defaultdict(int)
    for i, j, d in pairs:
        linked[i], linked[j] = max(linked[i], d), max(linked[j], d)
    for component in _components(len(kept), pairs):
        members = sorted((kept[i] for i in component), key=_keep_order)
        keep = members[0]
        groups.append(_group("near", members, max(linked[i] for i in component)))
        for f in members[1:]:
            kind = "near_duplicate" if f.split == keep.split else "near_leak"
            detail = f"looks like {keep.source} ({(f.phash ^ keep.phash).bit_count()} of 64 hash bits differ)"
            findings.append(Finding(f.source, kind, detail, f.split, f.label, f.sha256))
    return findings, groups


def scan(
    path: str | Path,
    *,
    min_size: int = 32,
    near_threshold: int = 4,
    max_bytes: int = MAX_IMAGE_BYTES,
    progress: bool = True,
    workers: int | None = None,
) -> ScanReport:
    """Look at every file of a class-folder tree (a folder or a ``.zip``) and report its problems.

    Args:
        path: the tree, laid out as `open_dataset` reads it.
        min_size: images whose shorter side is below this are reported as too small.
        near_threshold: perceptual hashes at most this many bits apart (of 64) count as near
            duplicates; negative turns the near-duplicate search off.
        max_bytes: files (or zip members) above this size are reported as too large, not read.
        progress: show a progress bar (on terminals only).
        workers: decoding processes; default one per CPU for big trees.

    Raises:
        FerlabError: the path is missing or no tree, or the tree itself is unsafe (a zip member
            escaping the archive or a decompression bomb, a symlink loop). Bad files never raise.
    """
    start = time.perf_counter()
    path = Path(path).expanduser()
    if not path.exists():
        raise FerlabError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix.lower() != ".zip":
        raise FerlabError(f"cannot scan {path}: expected a folder or a .zip of class folders")
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if any(p.suffix.lower() == ".csv" for p in entries) and not any(p.is_dir() for p in entries):
            raise FerlabError(f"cannot scan {path}: it holds FER2013 CSV files, and scan checks image folders")
    listing = list_tree(path)
    places = {rel: (label, split) for rel, label, split in place_files(listing.files, listing.dirs)}
    findings: list[Finding] = []
    decoded: list[_File] = []
    for r in _inspect_all(listing, min_size, max_bytes, progress, workers):
        label, split = places[r.rel]
        source = listing.source(r.rel)
        findings += [Finding(source, kind, detail, split, label, r.sha256) for kind, detail in r.problems]
        copies = listing.clashes.get(r.rel, [])
        findings += [Finding(source, "duplicate_name", f"{len(copies)} members share this name; {copy}", split, label)
                     for copy in copies]
        if not label and is_image_name(r.rel):
            findings.append(Finding(source, "misplaced", "not inside a known class folder", split, label, r.sha256))
        if r.phash is not None:
            decoded.append(_File(source, split, label, r.sha256, r.phash))
    duplicates, groups = _duplicates(decoded, near_threshold)
    order = {kind: i for i, kind in enumerate(KINDS)}
    findings = sorted(findings + duplicates, key=lambda f: (order[f.kind], f.source))
    groups.sort(key=lambda g: (g.kind, not g.cross_split, g.sources))
    report = ScanReport(str(listing.path), listing.archive, len(listing.files), len(decoded),
                        round(time.perf_counter() - start, 2), min_size, near_threshold, findings, groups)
    log.info("scanned %s: %d files, %d errors, %d warnings", path, report.files, report.errors(), report.warnings())
    return report


def format_report(report: ScanReport, examples: int = 10) -> str:
    """The readable summary (``scan.txt``): counts per kind, `examples` of each, leakage groups."""
    lines = [
        f"scan of {report.root}",
        f"{report.files} files, {report.images} decoded images, {report.seconds:.1f} s "
        f"(min size {report.min_size} px, near-duplicate threshold {report.near_threshold} bits)",
        f"{report.errors()} errors, {report.warnings()} warnings",
        "",
        f"{'kind':20s} {'severity':8s} {'count':>7s}",
    ]
    counts = report.counts()
    lines += [f"{kind:20s} {severity:8s} {counts[kind]:7d}" for kind, severity in KINDS.items()]
    for kind in KINDS:
        found = report.of_kind(kind)
        if not found:
            continue
        lines += ["", f"{kind} ({len(found)}, {KINDS[kind]}): {_EXPLAIN[kind]}"]
        lines += [f"  {f.source}: {f.detail}" for f in found[:examples]]
        if len(found) > examples:
            lines.append(f"  ... {len(found) - examples} more in scan.json")
    for kind in ("exact", "near"):
        crossing = [g for g in report.groups if g.kind == kind and g.cross_split]
        if not crossing:
            continue
        lines += ["", f"{kind} duplicate groups across splits ({len(crossing)}; kept copy first):"]
        for g in crossing[:examples]:
            members = zip(g.sources, g.splits, g.labels)
            lines.append("  " + " | ".join(f"{s} [{split or '-'}/{label or '-'}]" for s, split, label in members))
        if len(crossing) > examples:
            lines.append(f"  ... {len(crossing) - examples} more in scan.json")
    return "\n".join(lines) + "\n"


def write_report(report: ScanReport, out_dir: str | Path, *, examples: int = 10) -> tuple[Path, Path]:
    """Write ``scan.json`` (everything) and ``scan.txt`` (counts, `examples` per kind, leakage groups).

    Returns:
        The two paths.
    """
    out_dir = Path(out_dir)
    json_path, text_path = out_dir / "scan.json", out_dir / "scan.txt"
    write_json(json_path, report.to_dict())
    write_text(text_path, format_report(report, examples))
    return json_path, text_path
