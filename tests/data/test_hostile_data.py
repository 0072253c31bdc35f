"""Hostile data (issue 20): files, quarantines and archives built to crash, hang or trick the data layer.

Every input is made in tmp_path. Each test checks that ferlab either copes (restores, resumes)
or refuses with one line naming the file, without a traceback, and that no user file changed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import signal
import stat
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.data import open_dataset
from ferlab.data.dataset import decode_table
from ferlab.data.manifest import read_manifest as read_csv_manifest
from ferlab.data.quarantine import MANIFEST, clean, restore
from ferlab.data.scan import scan, write_report
from ferlab.data.transforms import Preprocessing
from ferlab.errors import FerlabError

pytestmark = pytest.mark.hostile

@pytest.fixture(autouse=True)
def no_hang():
    """Fail, rather than hang, when something blocks on a FIFO or reads gigabytes."""

    def expire(signum, frame):
        raise TimeoutError("took over 30 s: something blocked or read far too much")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 30)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 48), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def snapshot(*roots: Path) -> dict[str, tuple[str, str]]:
    """What is under `roots`, hidden files included, without following links or opening special files."""
    seen: dict[str, tuple[str, str]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                path = Path(folder) / name
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    seen[str(path)] = ("link", os.readlink(path))
                elif stat.S_ISREG(mode) and path.stat().st_size > 2**26:  # the sparse 8 GiB file: not read
                    seen[str(path)] = ("big file", f"{path.stat().st_size} {path.stat().st_mtime_ns}")
                elif stat.S_ISREG(mode):
                    seen[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
                elif not stat.S_ISDIR(mode):
                    seen[str(path)] = ("special", stat.filemode(mode))
    return seen


def cli(capsys, monkeypatch, *args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``ferlab ARGS``; the log handler is made afresh on this test's stderr."""
    monkeypatch.setattr(logging.getLogger("ferlab"), "handlers", [])
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *names: object) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert all(str(n) in lines[0] for n in names), lines[0]
    return lines[0]


def two_class_tree(root: Path, duplicate: bool = True) -> Path:
    """happy/a.png, sad/c.png, and (duplicate) happy/b.png, a copy of a.png that scan flags."""
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
    (root / "happy/a.png").write_bytes(image_bytes(0))
    (root / "sad/c.png").write_bytes(image_bytes(1))
    if duplicate:
        (root / "happy/b.png").write_bytes(image_bytes(0))
    return root


# 1. Symlinks in a tree: clean and restore must both work, links coming back as links.


def test_restore_puts_back_a_quarantined_relative_symlink(tmp_path, capsys, monkeypatch):
    tree = tmp_path / "t"
    for label in ("happy", "sad"):
        (tree / label).mkdir(parents=True)
    (tree / "happy/a.jpg").write_bytes(image_bytes(0, "JPEG"))
    (tree / "sad/c.jpg").write_bytes(image_bytes(1, "JPEG"))
    os.symlink("a.jpg", tree / "happy/b.jpg")
    before = snapshot(tree)
    quarantine = tmp_path / "q"
    code, out, err = cli(capsys, monkeypatch, "data", "clean", tree, "--quarantine", quarantine)
    assert code == 0, err
    assert "moved 1 files" in out and not os.path.lexists(tree / "happy/b.jpg")
    # The link in the quarantine still shows the image it showed in the tree.
    assert (quarantine / "happy/b.jpg").read_bytes() == (tree / "happy/a.jpg").read_bytes()
    code, out, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 0, err
    assert "restored 1 files" in out and snapshot(tree) == before


def test_restore_rescues_a_symlink_that_an_older_clean_moved_as_is(tmp_path, capsys, monkeypatch):
    """Quarantines written before the fix hold the link itself, dangling; restore must still put it back."""
    tree = two_class_tree(tmp_path / "t", duplicate=False)
    os.symlink("a.png", tree / "happy/b.png")
    before = snapshot(tree)
    quarantine = tmp_path / "q"
    (quarantine / "happy").mkdir(parents=True)
    os.rename(tree / "happy/b.png", quarantine / "happy/b.png")  # what the old clean did (via a hard link)
    entry = {"original": str(tree / "happy/b.png"), "quarantined": str(quarantine / "happy/b.png"),
             "path": "happy/b.png", "size": (tree / "happy/a.png").stat().st_size,
             "sha256": hashlib.sha256((tree / "happy/a.png").read_bytes()).hexdigest(),
             "kinds": ["duplicate"], "details": ["same bytes as happy/a.png"], "restored": False}
    (quarantine / MANIFEST).write_text(json.dumps({"format": "ferlab-quarantine", "version": 1,
                                                   "root": str(tree), "entries": [entry]}))
    code, out, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 0, err
    assert snapshot(tree) == before


# 2. A report of one tree must not clean another.


def test_clean_refuses_a_report_of_another_tree(tmp_path, capsys, monkeypatch):
    rep_a, rep_b = two_class_tree(tmp_path / "repA"), two_class_tree(tmp_path / "repB")
    write_report(scan(rep_a, progress=False), tmp_path / "repA_scan")
    before = snapshot(rep_a, rep_b)
    code, _, err = cli(capsys, monkeypatch, "data", "clean", rep_b, "--report", tmp_path / "repA_scan",
                       "--quarantine", tmp_path / "q")
    assert code == 2
    one_error_line(err, rep_a, rep_b)
    assert snapshot(rep_a, rep_b) == before and not (tmp_path / "q").exists()
    with pytest.raises(FerlabError, match="repA"):
        clean(tmp_path / "repA_scan", tmp_path / "q", tree=rep_b)
    # The report's own tree is fine, however it is spelled.
    assert len(clean(tmp_path / "repA_scan", tmp_path / "q", tree=tmp_path / "repB/../repA").moved) == 1


# 3. restore must not trust manifest.json.


def _crafted(tmp_path: Path, case: str) -> Path:
    """A quarantine whose manifest.json tries the attack `case`."""
    tree = two_class_tree(tmp_path / "t", duplicate=False)
    quarantine, victim = tmp_path / "box" / "q", tmp_path / "victim"
    (quarantine / "happy").mkdir(parents=True)
    victim.mkdir()
    (victim / "secret.txt").write_text("the user's own file\n")
    evil = b"#!/bin/sh\necho owned\n"
    path, data, original = "happy/evil.sh", evil, tree / "happy/secret.txt"
    if case == "original_outside":  # the file sits in the quarantine; its original is anywhere
        (quarantine / path).write_bytes(evil)
        original = tmp_path / "outside/newdir/evil.sh"
    elif case == "path_escapes":  # the path leads out of the quarantine and the tree
        (tmp_path / "box/evil.sh").write_bytes(evil)
        path = "../evil.sh"
        original = Path(os.path.normpath(tree / path))
    elif case == "steals_from_outside":  # would move the user's file into the tree
        path, data = "../../victim/secret.txt", (victim / "secret.txt").read_bytes()
    elif case == "absolute_path":
        path, data = str(victim / "secret.txt"), (victim / "secret.txt").read_bytes()
    elif case == "through_a_symlinked_folder":
        os.symlink(victim, quarantine / "loot")
        path, data, original = "loot/secret.txt", (victim / "secret.txt").read_bytes(), tree / "loot/secret.txt"
    elif case == "hidden_path":  # ferlab never quarantines hidden files, so this entry is forged
        (quarantine / ".git/hooks").mkdir(parents=True)
        (quarantine / ".git/hooks/post-checkout").write_bytes(evil)
        path, original = ".git/hooks/post-checkout", tree / ".git/hooks/post-checkout"
    else:
        raise AssertionError(case)
    entry = {"original": str(original), "quarantined": str(quarantine / path), "path": path, "size": len(data),
             "sha256": hashlib.sha256(data).hexdigest(), "kinds": ["not_image"], "details": ["x"], "restored": False}
    (quarantine / MANIFEST).write_text(json.dumps({"format": "ferlab-quarantine", "version": 1,
                                                   "root": str(tree), "entries": [entry]}))
    return quarantine


@pytest.mark.parametrize("case", ["original_outside", "path_escapes", "steals_from_outside", "absolute_path",
                                  "through_a_symlinked_folder", "hidden_path"])
def test_restore_refuses_a_crafted_manifest(tmp_path, capsys, monkeypatch, case):
    quarantine = _crafted(tmp_path, case)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 2
    one_error_line(err, quarantine / MANIFEST)
    assert snapshot(tmp_path) == before  # the victim's file is where it was; nothing new anywhere


def test_restore_refuses_entries_without_a_sha256(tmp_path, capsys, monkeypatch):
    tree = two_class_tree(tmp_path / "t")
    quarantine = tmp_path / "q"
    clean(scan(tree, progress=False), quarantine)
    data = json.loads((quarantine / MANIFEST).read_text())
    del data["entries"][0]["sha256"]
    (quarantine / MANIFEST).write_text(json.dumps(data))
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 2
    assert "no sha256" in one_error_line(err, quarantine / MANIFEST, "happy/b.png")
    assert snapshot(tmp_path) == before


# 4. A move onto another file system, killed half way, must resume or roll back.

def _cross_device_link(real_link):
    """os.link that fails as between two file systems for every move between two folders."""

    def link(src, dst, *args, **kwargs):
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, *args, **kwargs)

    return link


def _kill_during(step: str, victim: Path, move, *args: Path) -> None:
    """Run ``move(*args)`` across file systems in a child process that SIGKILLs itself at `step`.

    step "fsync": when a copy is first synced; "unlink": right after `victim` is unlinked.
    A forked child dies like a killed ferlab: no finally blocks, no atexit.
    """
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            real_fsync, real_unlink = os.fsync, os.unlink

            def fsync(fd):
                if step == "fsync":
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_fsync(fd)

            def unlink(path, *a, **k):
                real_unlink(path, *a, **k)
                if step == "unlink" and str(path) == str(victim):
                    os.kill(os.getpid(), signal.SIGKILL)

            os.link, os.fsync, os.unlink = _cross_device_link(os.link), fsync, unlink
            move(*args)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed: status {status}"


@pytest.fixture
def across(monkeypatch):
    """Moves between folders in this process behave as between file systems."""
    monkeypatch.setattr(os, "link", _cross_device_link(os.link))


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("step", ["fsync", "unlink"])
def test_a_clean_killed_mid_move_resumes(tmp_path, across, step):
    tree, quarantine = two_class_tree(tmp_path / "t"), tmp_path / "q"
    write_report(scan(tree, progress=False), tmp_path / "scan")
    before = snapshot(tree)
    _kill_during(step, tree / "happy/b.png", clean, tmp_path / "scan", quarantine)
    # The flagged file's bytes survive somewhere: in the tree, or complete in the quarantine.
    wanted = before[str(tree / "happy/b.png")]
    assert wanted in snapshot(tree, quarantine).values()
    clean(tmp_path / "scan", quarantine)
    assert _files(quarantine) == {MANIFEST, "happy/b.png"} and not (tree / "happy/b.png").exists()
    restore(quarantine)
    assert snapshot(tree) == before and _files(quarantine) == {MANIFEST}


@pytest.mark.parametrize("step", ["fsync", "unlink"])
def test_restore_after_a_killed_clean_puts_everything_back(tmp_path, capsys, monkeypatch, across, step):
    tree, quarantine = two_class_tree(tmp_path / "t"), tmp_path / "q"
    write_report(scan(tree, progress=False), tmp_path / "scan")
    before = snapshot(tree)
    _kill_during(step, tree / "happy/b.png", clean, tmp_path / "scan", quarantine)
    code, _, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 0, err
    assert snapshot(tree) == before and _files(quarantine) == {MANIFEST}


def test_a_killed_restore_resumes(tmp_path, across):
    tree, quarantine = two_class_tree(tmp_path / "t"), tmp_path / "q"
    before = snapshot(tree)
    clean(scan(tree, progress=False), quarantine)
    _kill_during("fsync", quarantine / "happy/b.png", restore, quarantine)
    assert scan(tree, progress=False).files == 2  # a half-restored copy is hidden from reading
    restore(quarantine)
    assert snapshot(tree) == before and _files(quarantine) == {MANIFEST}


def test_restore_never_advises_moving_away_the_only_copy(tmp_path, capsys, monkeypatch, across):
    """A copy an older clean left half-written in the quarantine: the message names it, not the original."""
    tree, quarantine = two_class_tree(tmp_path / "t"), tmp_path / "q"
    clean(scan(tree, progress=False), quarantine)
    restore(quarantine)
    data = json.loads((quarantine / MANIFEST).read_text())
    data["entries"][0]["restored"] = False
    (quarantine / MANIFEST).write_text(json.dumps(data))
    (quarantine / "happy/b.png").write_bytes(image_bytes(0)[:100])  # the partial copy
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "data", "restore", quarantine)
    assert code == 2
    line = one_error_line(err, quarantine / "happy/b.png", tree / "happy/b.png")
    assert "incomplete copy" in line and "intact" in line
    assert snapshot(tmp_path) == before


# 5. FIFOs, devices and huge files are never read, by any reader.


@pytest.fixture
def hostile_tree(tmp_path) -> Path:
    tree = two_class_tree(tmp_path / "t", duplicate=False)
    os.symlink("/dev/zero", tree / "happy/zero.jpg")
    os.mkfifo(tree / "happy/fifo.jpg")
    with open(tree / "sad/big.jpg", "wb") as handle:
        handle.truncate(8 * 2**30)  # 8 GiB, sparse
    return tree


HOSTILE = {("not_regular", "happy/zero.jpg"), ("not_regular", "happy/fifo.jpg"), ("too_large", "sad/big.jpg")}


def _found(report, root: Path) -> set[tuple[str, str]]:
    return {(f.kind, f.source[len(f"{root}/"):]) for f in report.findings}


def test_scan_reports_devices_fifos_and_huge_files_without_reading_them(hostile_tree, capsys, monkeypatch):
    start = time.perf_counter()
    report = scan(hostile_tree, progress=False)
    assert time.perf_counter() - start < 10
    assert _found(report, hostile_tree) == HOSTILE and report.images == 2
    details = " ".join(f.detail for f in report.findings)
    assert "FIFO" in details and "character device" in details and "8192 MiB" in details
    # The cap is a parameter and a flag.
    assert ("too_large", "happy/a.png") in _found(scan(hostile_tree, progress=False, max_bytes=100), hostile_tree)
    before = snapshot(hostile_tree)
    code, _, err = cli(capsys, monkeypatch, "data", "scan", hostile_tree, "--out", hostile_tree.parent / "s",
                       "--max-bytes", "100")
    assert code == 0, err
    assert json.loads((hostile_tree.parent / "s/scan.json").read_text())["counts"]["too_large"] == 3
    assert snapshot(hostile_tree) == before


def test_reading_stats_and_training_decode_never_hang_or_load_them(hostile_tree, capsys, monkeypatch):
    table = open_dataset(hostile_tree)
    for sample in table.samples:
        name = Path(sample.source).name
        if name in ("a.png", "c.png"):
            table.read_image(sample)
            continue
        with pytest.raises(FerlabError, match=rf"{name}.* (FIFO|character device|8192 MiB)"):
            table.read_image(sample)
    _, ok = decode_table(table, Preprocessing())
    assert ok.sum() == 2
    code, _, err = cli(capsys, monkeypatch, "data", "stats", hostile_tree, "--out", hostile_tree.parent / "stats")
    assert code == 0 and "Traceback" not in err


def test_manifest_readers_refuse_them_too(hostile_tree):
    manifest = hostile_tree / "list.csv"
    manifest.write_text("path,label\nhappy/a.png,happy\nsad/big.jpg,sad\n")
    table = read_csv_manifest(manifest)
    table.read_image(table.samples[0])
    with pytest.raises(FerlabError, match=r"big\.jpg.* 8192 MiB"):
        table.read_image(table.samples[1])
    # A FIFO or device is no file: the manifest is refused up front, naming them.
    manifest.write_text("path,label\nhappy/fifo.jpg,happy\nhappy/zero.jpg,happy\n")
    with pytest.raises(FerlabError, match=r"fifo\.jpg.*zero\.jpg"):
        read_csv_manifest(manifest)


def test_clean_moves_links_and_huge_files_and_leaves_fifos_in_place(tmp_path, capsys, monkeypatch):
    tree = two_class_tree(tmp_path / "t", duplicate=False)
    os.symlink("/dev/zero", tree / "happy/zero.jpg")
    os.mkfifo(tree / "happy/fifo.jpg")
    (tree / "sad/big.png").write_bytes(image_bytes(5) * 3)
    before = snapshot(tree)
    write_report(scan(tree, progress=False, max_bytes=5000), tmp_path / "scan")
    code, out, err = cli(capsys, monkeypatch, "data", "clean", tree, "--report", tmp_path / "scan",
                         "--quarantine", tmp_path / "q")
    assert code == 0, err
    assert "moved 2 files" in out and "fifo.jpg" in out
    assert _files(tmp_path / "q") == {MANIFEST, "happy/zero.jpg", "sad/big.png"}
    assert stat.S_ISFIFO((tree / "happy/fifo.jpg").lstat().st_mode)
    assert cli(capsys, monkeypatch, "data", "restore", tmp_path / "q")[0] == 0
    assert snapshot(tree) == before


# 6. Zips with encrypted, oddly compressed, corrupt or duplicated members.


def _zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names; here they are the point
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for name, data in [("faces/happy/a.png", image_bytes(0)), ("faces/sad/c.png", image_bytes(1)),
                               *members.items()]:
                archive.writestr(name, data)
    return path


def _patch_member(path: Path, name: str, *, flag: int = 0, method: int | None = None) -> None:
    """Set a member's flag bits or compression method in both its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(name).header_offset
        central = archive.start_dir
    patches = [(offset + 6, offset + 8)]
    while data[central:central + 4] == b"PK\x01\x02":
        size = int.from_bytes(data[central + 28:central + 30], "little")
        extra = int.from_bytes(data[central + 30:central + 32], "little")
        comment = int.from_bytes(data[central + 32:central + 34], "little")
        if data[central + 46:central + 46 + size].decode() == name:
            patches.append((central + 8, central + 10))
        central += 46 + size + extra + comment
    for flags_at, method_at in patches:
        data[flags_at:flags_at + 2] = (int.from_bytes(data[flags_at:flags_at + 2], "little") | flag).to_bytes(2, "little")
        if method is not None:
            data[method_at:method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("case", "message"), [("encrypted", "encrypted"), ("deflate64", "compression method 9"),
                                               ("corrupt", "damaged")])
def test_unreadable_zip_members_are_reported_not_raised(tmp_path, capsys, monkeypatch, case, message):
    archive = _zip_with(tmp_path / "faces.zip", {"faces/sad/odd.png": image_bytes(2)})
    if case == "encrypted":
        _patch_member(archive, "faces/sad/odd.png", flag=0x1)
    else:  # deflate64, which zipfile cannot read; or deflate over bytes that are no deflate stream
        _patch_member(archive, "faces/sad/odd.png", method=9 if case == "deflate64" else zipfile.ZIP_DEFLATED)
    member = f"{archive}:faces/sad/odd.png"
    (finding,) = scan(archive, progress=False).findings
    assert (finding.source, finding.kind) == (member, "unreadable") and message in finding.detail
    table = open_dataset(archive)
    (sample,) = [s for s in table.samples if s.source == member]
    with pytest.raises(FerlabError, match=message) as err:
        table.read_image(sample)
    assert member in str(err.value) and "\n" not in str(err.value)
    assert decode_table(table, Preprocessing())[1].sum() == 2
    code, _, err = cli(capsys, monkeypatch, "data", "stats", archive, "--out", tmp_path / "stats")
    assert code == 0 and "Traceback" not in err


def test_duplicate_member_names_are_reported_and_refused(tmp_path, capsys, monkeypatch):
    archive = _zip_with(tmp_path / "faces.zip", {"faces/sad/twin.png": image_bytes(2)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(archive, "a") as handle:
            handle.writestr("faces/sad/twin.png", image_bytes(3))
    twins = [f for f in scan(archive, progress=False).findings if f.kind == "duplicate_name"]
    assert [f.source for f in twins] == [f"{archive}:faces/sad/twin.png"] * 2
    assert twins[0].detail != twins[1].detail and all("2 members" in f.detail for f in twins)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "data", "stats", archive, "--out", tmp_path / "stats")
    assert code == 2
    one_error_line(err, archive, "'faces/sad/twin.png'")
    assert snapshot(tmp_path) == before
