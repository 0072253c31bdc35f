import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.data.scan import KINDS, ScanReport, load_report, scan, write_report
from ferlab.errors import FerlabError
from tests.synthetic import write_zip

CLASSES = ("angry", "happy", "neutral")
PER_CLASS = {"train": 6, "val": 2, "test": 2}

#: (kind, path relative to the tree) of every problem `make_planted_tree` plants, and nothing else.
PLANTED = {
    ("truncated", "train/happy/z_truncated.jpg"),
    ("not_image", "train/angry/z_notes.jpg"),
    ("zero_byte", "val/neutral/z_empty.png"),
    ("unexpected_mode", "train/neutral/z_rgba.png"),
    ("too_small", "train/angry/z_tiny.png"),
    ("blank", "test/angry/z_black.png"),
    ("unsupported_format", "train/happy/z_readme.txt"),
    ("leak", "train/happy/z_copy_of_test.png"),
    ("near_duplicate", "train/neutral/z_brighter.png"),
    ("near_leak", "train/happy/z_reencoded.jpg"),
}


def smooth_image(rng: np.random.Generator, size: int = 64, mode: str = "L") -> Image.Image:
    """A random but smooth image: distinct from every other one, yet robust to re-encoding."""
    shape = (6, 6) if mode == "L" else (6, 6, len(mode))
    return Image.fromarray(rng.integers(40, 200, shape).astype(np.uint8), mode).resize((size, size), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def make_planted_tree(root: Path) -> Path:
    """30 distinct good images in train/val/test class folders, plus the problems in `PLANTED`."""
    rng = np.random.default_rng(0)
    for split, n in PER_CLASS.items():
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                smooth_image(rng).save(root / split / label / f"img_{i}.png")
    (root / "train/happy/z_truncated.jpg").write_bytes(_jpeg(smooth_image(rng))[:400])
    (root / "train/angry/z_notes.jpg").write_text("these are notes, not a JPEG\n")
    (root / "val/neutral/z_empty.png").write_bytes(b"")
    smooth_image(rng, mode="RGBA").save(root / "train/neutral/z_rgba.png")
    smooth_image(rng, size=8).save(root / "train/angry/z_tiny.png")
    Image.new("L", (48, 48), 0).save(root / "test/angry/z_black.png")
    (root / "train/happy/z_readme.txt").write_text("where these images came from\n")
    (root / "train/happy/z_copy_of_test.png").write_bytes((root / "test/happy/img_0.png").read_bytes())
    brighter = np.asarray(Image.open(root / "train/neutral/img_1.png"), dtype=np.int16) + 12
    Image.fromarray(brighter.astype(np.uint8)).save(root / "train/neutral/z_brighter.png")
    (root / "train/happy/z_reencoded.jpg").write_bytes(_jpeg(Image.open(root / "val/happy/img_1.png")))
    # Ignored, as reading ignores them.
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "__MACOSX/train").mkdir(parents=True)
    (root / "__MACOSX/train/._img_0.png").write_bytes(b"\0\5\26\7")
    return root


def found(report: ScanReport, prefix: str) -> set[tuple[str, str]]:
    """(kind, path relative to the tree) of every finding; `prefix` is what sources start with."""
    assert all(f.source.startswith(prefix) for f in report.findings)
    return {(f.kind, f.source[len(prefix):]) for f in report.findings}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return make_planted_tree(tmp_path_factory.mktemp("planted") / "faces")


@pytest.fixture(scope="module")
def report(planted) -> ScanReport:
    return scan(planted, progress=False)


def test_scan_finds_exactly_the_planted_problems(planted, report):
    assert found(report, f"{planted}/") == PLANTED
    assert report.files == 30 + len(PLANTED)
    assert report.images == report.files - 4  # truncated, not an image, empty, not an image format


def test_findings_carry_split_label_and_severity(planted, report):
    (leak,) = report.of_kind("leak")
    assert (leak.split, leak.label, leak.severity) == ("train", "happy", "error")
    assert "test/happy/img_0.png" in leak.detail
    (near_leak,) = report.of_kind("near_leak")
    assert near_leak.severity == "warning" and "val/happy/img_1.png" in near_leak.detail
    assert report.counts()["leak"] == 1 and set(report.counts()) == set(KINDS)
    assert report.errors() == 5 and report.warnings() == 5


def test_duplicate_groups_keep_the_evaluation_copy_first(planted, report):
    exact = [g for g in report.groups if g.kind == "exact"]
    near = [g for g in report.groups if g.kind == "near"]
    assert len(exact) == 1 and exact[0].cross_split and exact[0].splits == ("test", "train")
    assert sorted(g.splits for g in near) == [("train", "train"), ("val", "train")]


def test_exact_copies_are_not_reported_again_as_near_ones(tmp_path):
    root = make_planted_tree(tmp_path / "faces")
    (root / "test/angry/z_copy.png").write_bytes((root / "test/angry/img_0.png").read_bytes())
    report = scan(root, progress=False)
    assert ("duplicate", "test/angry/z_copy.png") in found(report, f"{root}/")
    assert not any("test/angry/z_copy.png" in s for g in report.groups if g.kind == "near" for s in g.sources)


def test_zip_scan_matches_folder_scan(planted, report, tmp_path):
    archive = write_zip(planted, tmp_path / "faces.zip")
    zipped = scan(archive, progress=False, workers=2)  # worker processes, each with its own zip handle
    assert zipped.archive and zipped.files == report.files
    assert found(zipped, f"{archive.absolute()}:dataset/") == PLANTED


def test_unsplit_tree_has_duplicates_but_no_leaks(tmp_path):
    rng = np.random.default_rng(1)
    for label in CLASSES:
        (tmp_path / label).mkdir()
        for i in range(3):
            smooth_image(rng).save(tmp_path / label / f"img_{i}.png")
    (tmp_path / "sad").mkdir()
    (tmp_path / "sad/img_0.png").write_bytes((tmp_path / "happy/img_0.png").read_bytes())
    (tmp_path / "bored").mkdir()
    smooth_image(rng).save(tmp_path / "bored/img_0.png")
    report = scan(tmp_path, progress=False)
    assert found(report, f"{tmp_path}/") == {("duplicate", "sad/img_0.png"), ("misplaced", "bored/img_0.png")}
    (duplicate,) = report.of_kind("duplicate")
    assert "labelled happy there, sad here" in duplicate.detail


def test_report_round_trips_through_json(planted, report, tmp_path):
    json_path, text_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["counts"]["truncated"] == 1
    assert load_report(tmp_path / "out") == report
    text = text_path.read_text()
    assert "leak (1, error)" in text and "z_copy_of_test.png" in text
    assert "exact duplicate groups across splits (1" in text


def test_scan_refuses_missing_and_non_tree_paths(tmp_path):
    with pytest.raises(FerlabError, match="no such file or folder"):
        scan(tmp_path / "nope", progress=False)
    (tmp_path / "a.csv").write_text("emotion,pixels\n")
    with pytest.raises(FerlabError, match=r"cannot scan .*a\.csv"):
        scan(tmp_path / "a.csv", progress=False)
    with pytest.raises(FerlabError, match="holds FER2013 CSV files"):
        scan(tmp_path, progress=False)
