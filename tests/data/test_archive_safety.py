import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.data import open_dataset
from ferlab.data.scan import scan
from ferlab.errors import FerlabError


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 48), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A valid two-class tree in a zip, plus `extra` members written exactly as named."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for seed, label in enumerate(("happy", "sad")):
            archive.writestr(f"faces/{label}/a.png", _png(seed))
        for name, data in (extra or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def _zeros_member(path: Path, name: str, mib: int) -> Path:
    """A member of `mib` MiB of zeros: a few hundred KB in the archive."""
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open(name, "w", force_zip64=True) as member:  # a name, so the archive's compression applies
            chunk = bytes(2**20)
            for _ in range(mib):
                member.write(chunk)
    return path


def _both(path: Path) -> Iterator[str]:
    """Reading and scanning must refuse alike."""
    for read in (open_dataset, lambda p: scan(p, progress=False)):
        with pytest.raises(FerlabError) as err:
            read(path)
        yield str(err.value)


def test_a_safe_zip_reads(tmp_path):
    assert len(open_dataset(_zip(tmp_path / "ok.zip"))) == 2


@pytest.mark.parametrize("name", ["../evil.png", "faces/happy/../../../evil.png", "/etc/evil.png", "..\\evil.png", "C:/evil.png"])
def test_escaping_members_are_refused(tmp_path, name):
    archive = _zip(tmp_path / "evil.zip", {name: _png(2)})
    for message in _both(archive):
        assert f"unsafe member {name!r}" in message and "evil.zip" in message


def test_a_decompression_bomb_member_is_refused(tmp_path):
    archive = _zeros_member(_zip(tmp_path / "bomb.zip"), "faces/happy/bomb.png", 200)
    assert archive.stat().st_size < 2**20
    for message in _both(archive):
        assert "'faces/happy/bomb.png'" in message and "200 MiB" in message


def test_an_absurd_compression_ratio_is_refused_below_the_size_limit(tmp_path):
    archive = _zeros_member(_zip(tmp_path / "ratio.zip"), "faces/sad/flat.png", 20)
    for message in _both(archive):
        assert "'faces/sad/flat.png'" in message and "expands" in message


def test_a_big_member_that_is_no_image_is_never_read(tmp_path):
    archive = _zeros_member(_zip(tmp_path / "notes.zip"), "faces/notes.txt", 20)
    assert len(open_dataset(archive)) == 2
    assert [f.kind for f in scan(archive, progress=False).findings] == ["unsupported_format"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_pixel_bomb_is_reported_not_decoded(tmp_path):
    # A 40000x40000 PNG header over almost no data: Pillow refuses it before decoding.
    header = struct.pack(">IIBBBBB", 40000, 40000, 1, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    for seed, label in enumerate(("happy", "sad")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.png").write_bytes(_png(seed))
    (tmp_path / "sad" / "bomb.png").write_bytes(bomb)
    (finding,) = scan(tmp_path, progress=False).findings
    assert finding.kind == "not_image" and "decompression bomb" in finding.detail
    table = open_dataset(tmp_path)
    (sample,) = [s for s in table.samples if s.source.endswith("bomb.png")]
    with pytest.raises(FerlabError, match=r"cannot read image .*bomb\.png"):
        table.read_image(sample)


def _tree(root: Path) -> Path:
    for seed, label in enumerate(("happy", "sad")):
        (root / "train" / label).mkdir(parents=True)
        (root / "train" / label / "a.png").write_bytes(_png(seed))
    return root


def test_a_symlink_loop_is_refused(tmp_path):
    root = _tree(tmp_path / "faces")
    os.symlink(root / "train", root / "train" / "happy" / "again")
    for message in _both(root):
        assert "symlink loop" in message and "train/happy/again" in message


def test_symlinked_folders_are_followed(tmp_path):
    root = _tree(tmp_path / "faces")
    elsewhere = tmp_path / "elsewhere" / "neutral"
    elsewhere.mkdir(parents=True)
    (elsewhere / "b.png").write_bytes(_png(2))
    os.symlink(elsewhere, root / "train" / "neutral")
    assert open_dataset(root).label_counts() == {"happy": 1, "sad": 1, "neutral": 1}
    assert scan(root, progress=False).findings == []
