import hashlib
import json
import shutil
from pathlib import Path

import pytest

from ferlab.data.quarantine import DEFAULT_KINDS, MANIFEST, clean, read_manifest, restore
from ferlab.data.scan import scan, write_report
from ferlab.errors import FerlabError
from tests.data.test_scan import PLANTED, make_planted_tree
from tests.synthetic import write_zip

#: What a default clean moves: everything planted but the near duplicates, which need a person.
CLEANED = {rel for kind, rel in PLANTED if kind in DEFAULT_KINDS}


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, hidden ones included, by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_planted_tree(tmp_path / "faces")


def test_clean_moves_exactly_the_flagged_files_and_restore_puts_them_back(tree, tmp_path):
    before = digests(tree)
    quarantine = tmp_path / "quarantine"
    result = clean(scan(tree, progress=False), quarantine)
    assert {m.path for m in result.moved} == CLEANED and len(CLEANED) == 8
    after = digests(tree)
    assert set(before) - set(after) == CLEANED and set(after) <= set(before)
    held = digests(quarantine)
    assert held.pop(MANIFEST) and held == {rel: before[rel] for rel in CLEANED}
    root, entries = read_manifest(quarantine)
    assert root == str(tree.absolute()) and {e.path for e in entries} == CLEANED
    (entry,) = [e for e in entries if e.path == "train/happy/z_copy_of_test.png"]
    assert entry.kinds == ("leak",) and entry.original == str(tree / entry.path) and entry.sha256 == before[entry.path]
    # The cleaned tree now reads without errors.
    assert scan(tree, progress=False).errors() == 0

    restored = restore(quarantine)
    assert sorted(restored) == sorted(tree / rel for rel in CLEANED)
    assert digests(tree) == before
    assert set(digests(quarantine)) == {MANIFEST}
    assert all(e.restored for e in read_manifest(quarantine)[1])
    assert restore(quarantine) == []


def test_clean_reads_a_written_report_and_chosen_kinds(tree, tmp_path):
    write_report(scan(tree, progress=False), tmp_path / "scan")
    result = clean(tmp_path / "scan" / "scan.json", tmp_path / "q", kinds=["near_leak", "leak"])
    assert {m.path for m in result.moved} == {"train/happy/z_reencoded.jpg", "train/happy/z_copy_of_test.png"}
    with pytest.raises(FerlabError, match=r"unknown finding kinds \['blurry'\]"):
        clean(tmp_path / "scan", tmp_path / "q2", kinds=["blurry"])


def test_second_clean_with_conflicts_moves_nothing(tree, tmp_path):
    quarantine = tmp_path / "quarantine"
    clean(scan(tree, progress=False), quarantine)
    # The same files turn up in the tree again (a fresh download, say): their places in the quarantine are taken.
    for rel in CLEANED:
        shutil.copy2(quarantine / rel, tree / rel)
    report = scan(tree, progress=False)
    tree_before, quarantine_before = digests(tree), digests(quarantine)
    with pytest.raises(FerlabError, match=rf"will not overwrite {quarantine}/"):
        clean(report, quarantine)
    assert digests(tree) == tree_before and digests(quarantine) == quarantine_before


def test_rerun_after_an_interruption_finishes_the_job(tree, tmp_path):
    report = scan(tree, progress=False)
    quarantine = tmp_path / "quarantine"
    clean(report, quarantine, kinds=["leak"])
    result = clean(report, quarantine)  # the leak went already; the rest follows
    assert result.already == 1 and {m.path for m in result.moved} == CLEANED - {"train/happy/z_copy_of_test.png"}
    assert len(restore(quarantine)) == len(CLEANED)


def test_restore_refuses_a_file_that_reappeared_and_a_changed_one(tree, tmp_path):
    before = digests(tree)
    quarantine = tmp_path / "quarantine"
    clean(scan(tree, progress=False), quarantine)
    (tree / "val/neutral/z_empty.png").write_bytes(b"new")
    with pytest.raises(FerlabError, match=r"will not overwrite .*val/neutral/z_empty\.png"):
        restore(quarantine)
    (tree / "val/neutral/z_empty.png").unlink()
    (quarantine / "train/angry/z_tiny.png").write_bytes(b"tampered")
    with pytest.raises(FerlabError, match=r"z_tiny\.png changed in the quarantine"):
        restore(quarantine)
    assert set(digests(tree)) == set(before) - CLEANED  # nothing moved back


def test_clean_refuses_changed_files_zips_and_quarantines_inside_the_tree(tree, tmp_path):
    report = scan(tree, progress=False)
    with pytest.raises(FerlabError, match="inside the dataset"):
        clean(report, tree / "quarantine")
    (tree / "train/angry/z_tiny.png").write_bytes(b"changed")
    with pytest.raises(FerlabError, match=r"z_tiny\.png changed since the scan"):
        clean(report, tmp_path / "q")
    archive = write_zip(tree, tmp_path / "faces.zip")
    with pytest.raises(FerlabError, match=r"cannot clean zip archive .*faces\.zip in place: extract it"):
        clean(scan(archive, progress=False), tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_manifest_is_plain_json(tree, tmp_path):
    clean(scan(tree, progress=False), tmp_path / "q")
    data = json.loads((tmp_path / "q" / MANIFEST).read_text())
    assert {"original", "quarantined", "path", "size", "sha256", "kinds", "details", "restored"} <= set(data["entries"][0])
