"""An on-disk cache of decoded pixels, keyed by the images' content, so later runs skip decoding.

The key hashes every sample's source, face box and content fingerprint together
with the target size and channels; any change to an image, the sample list or
the preprocessing gives a new key. Fingerprints are cheap to take: a zip
member's CRC-32 from the archive's directory, the bytes of a file on disk,
or the whole file behind CSV rows (hashed once).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

from ferlab._io import atomic_path
from ferlab.data.samples import SampleTable
from ferlab.data.transforms import Preprocessing

__all__ = ["content_key", "load_pixels", "save_pixels"]

log = logging.getLogger(__name__)

_FORMAT = "ferlab-pixels-1"


@functools.cache
def _file_digest(path: Path, size: int, mtime_ns: int) -> bytes:
    """Digest of a whole file; memoised per (size, mtime) within a process."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _digest(path: Path) -> bytes:
    stat = path.stat()
    return _file_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)


def content_key(table: SampleTable, prep: Preprocessing) -> str | None:
    """The cache key of `table` decoded with `prep`, or None when a source cannot be fingerprinted."""
    key = hashlib.blake2b(digest_size=20)
    key.update(f"{_FORMAT}|{prep.pixel_size}|{prep.channels}".encode())
    origin = Path(table.origin)
    members: dict[str, zipfile.ZipInfo] = {}
    if origin.suffix.lower() == ".zip" and origin.is_file():
        with zipfile.ZipFile(origin) as archive:
            members = {f"{origin}:{info.filename}": info for info in archive.infolist()}
    for sample in table.samples:
        key.update(f"\0{sample.source}\0{sample.box}\0".encode())
        if sample.source in members:
            info = members[sample.source]
            key.update(f"{info.CRC}:{info.file_size}".encode())
            continue
        path = Path(sample.source)
        container = Path(sample.source.rsplit(":", 1)[0])
        if path.is_file():
            key.update(_digest(path))
        elif container.is_file():
            key.update(_digest(container))
        else:
            log.debug("no cache for %s: cannot fingerprint %s", table.origin, sample.source)
            return None
    return key.hexdigest()


def load_pixels(cache_dir: str | Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(pixels, decoded-ok mask) stored under `key`, or None when absent or unreadable."""
    path = Path(cache_dir) / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return stored["pixels"], stored["ok"]
    except (OSError, ValueError, KeyError) as err:
        log.warning("ignoring unreadable pixel cache %s: %s", path, err)
        return None


def save_pixels(cache_dir: str | Path, key: str, pixels: np.ndarray, ok: np.ndarray) -> Path:
    path = Path(cache_dir) / f"{key}.npz"
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(handle, pixels=pixels, ok=ok)
    return path
