"""Manifests, ExpW, RAF-DB and FER+, each written small and synthetic, read into SampleTables."""

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlab.data import ImageDataset, Preprocessing, open_dataset
from ferlab.data.expw import read_expw
from ferlab.data.ferplus import read_ferplus
from ferlab.data.manifest import read_manifest, write_manifest
from ferlab.data.rafdb import read_rafdb
from ferlab.data.samples import Sample
from ferlab.errors import FerlabError


def _image(path: Path, value: int = 0, size: tuple[int, int] = (16, 16)) -> Path:
    """A uniform grayscale image (lossless PNG, or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _pixels(table, sample) -> np.ndarray:
    return np.asarray(table.read_image(sample).convert("L"))


# --- manifests ---------------------------------------------------------------


def _manifest(folder: Path, rows: list[str], header: str = "path,label,split") -> Path:
    path = folder / "m.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_labels_splits_boxes_and_paths(tmp_path):
    _image(tmp_path / "img" / "a.png", 10)
    outside = _image(tmp_path / "elsewhere" / "b.png", 20, size=(20, 20))
    path = _manifest(tmp_path, ["img/a.png,Happiness,training,,,,", f"{outside},ANGER,,2,3,4,5"],
                     header="Path,Label,Split,x,y,w,h")
    table = read_manifest(path)
    assert table.samples == [Sample(str(tmp_path / "img" / "a.png"), "happy", "train"),
                             Sample(str(outside), "angry", "", box=(2, 3, 4, 5))]
    assert table.read_image(table.samples[1]).size == (4, 5)


@pytest.mark.parametrize("box", ['"2 3 4 5"', '"2,3,4,5"'])
def test_manifest_box_column(tmp_path, box):
    _image(tmp_path / "a.png")
    table = read_manifest(_manifest(tmp_path, [f"a.png,sad,test,{box}"], header="path,label,split,box"))
    assert table.samples[0].box == (2, 3, 4, 5)


def test_manifest_round_trip(tmp_path):
    for name in ("a", "b", "c"):
        _image(tmp_path / "img" / f"{name}.png")
    samples = [
        Sample(str(tmp_path / "img" / "a.png"), "happy", "train", box=(1, 2, 3, 4), votes=(("happy", 0.7), ("neutral", 0.3))),
        Sample(str(tmp_path / "img" / "b.png"), "sad", "val"),
        Sample(str(tmp_path / "img" / "c.png"), "fear", "", votes=(("fear", 1 / 3), ("surprise", 2 / 3))),
    ]
    table = read_manifest(_manifest(tmp_path, ["img/a.png,happy,", "img/b.png,sad,", "img/c.png,fear,"])).with_samples(samples)
    written = write_manifest(table, tmp_path / "out.csv")
    assert written.read_text().splitlines()[1].startswith("img/a.png,")  # relative to the manifest's folder
    again = open_dataset(written, soft_labels=True)
    assert again.samples == samples
    assert [s.votes for s in open_dataset(written).samples] == [(), (), ()]  # hard labels unless asked
    assert again.split_counts() == {"train": 1, "val": 1, "unsplit": 1}


def test_manifest_outside_relative_to_is_absolute(tmp_path):
    _image(tmp_path / "img" / "a.png")
    table = read_manifest(_manifest(tmp_path, ["img/a.png,happy,"]))
    written = write_manifest(table, tmp_path / "sub" / "out.csv")
    assert written.read_text().splitlines()[1].startswith(f"{(tmp_path / 'img' / 'a.png').as_posix()},")
    assert read_manifest(written).samples == table.samples


def test_manifest_refuses_zip_and_csv_sources(tmp_path):
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(_image(tmp_path / "happy" / "a.png"), "happy/a.png")
    fer = tmp_path / "fer.csv"
    fer.write_text("emotion,pixels,Usage\n3,1 2 3 4,Training\n")
    for source in (archive, fer):
        with pytest.raises(FerlabError, match=r"export the images as a folder tree first"):
            write_manifest(open_dataset(source), tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,bored,train,", r"m\.csv:row 3: column 'label': unknown emotion 'bored'"),
        ("a.png,sad,holdout,", r"m\.csv:row 3: column 'split': 'holdout'"),
        ("a.png,sad,train,1 2 3", r"m\.csv:row 3: column 'box': box '1 2 3' is not four integers"),
        ("a.png,sad,train,0 0 0 5", r"m\.csv:row 3: column 'box': box \(0, 0, 0, 5\) needs"),
        ("a.png,sad,train,,sad:0.5", r"m\.csv:row 3: column 'votes': shares sum to 0\.5"),
        ("a.png,sad,train,,glum:1", r"m\.csv:row 3: column 'votes': unknown emotion 'glum'"),
        ("gone.png,sad,train,", r"1 of 2 image files in column 'path' do not exist, e\.g\. .*m\.csv:row 3: .*gone\.png"),
    ],
)
def test_manifest_errors_name_file_row_and_column(tmp_path, row, message):
    _image(tmp_path / "a.png")
    path = _manifest(tmp_path, ["a.png,happy,train,", row], header="path,label,split,box,votes")
    with pytest.raises(FerlabError, match=message):
        read_manifest(path)


def test_manifest_needs_path_and_label(tmp_path):
    with pytest.raises(FerlabError, match=r"m\.csv: no 'label' column"):
        open_dataset(_manifest(tmp_path, ["a.png"], header="path"))


# --- ExpW --------------------------------------------------------------------


def _expw(root: Path, lines: list[str], flat: bool = False) -> Path:
    """Photo p1.jpg holds two faces, bright patches at distinct boxes; p2.jpg one face."""
    photos = root / ("origin" if flat else "image/origin")
    photo = np.zeros((60, 80), np.uint8)
    photo[5:25, 10:30] = 200  # face 0: top 5, left 10, right 30, bottom 25
    photo[30:50, 40:75] = 100  # face 1: top 30, left 40, right 75, bottom 50
    photos.mkdir(parents=True)
    Image.fromarray(photo).save(photos / "p1.png")
    _image(photos / "p2.jpg", 50, size=(30, 30))
    labels = root / ("label.lst" if flat else "label/label.lst")
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("\n".join(lines) + "\n")
    return root


EXPW_LINES = ["p1.png 0 5 10 30 25 55.1 3", "p1.png 1 30 40 75 50 12.5 0", "", "p2.jpg 0 0 0 30 30 3.0 6"]


@pytest.mark.parametrize("flat", [False, True])
def test_expw_boxes_crop_each_face(tmp_path, flat):
    table = open_dataset(_expw(tmp_path, EXPW_LINES, flat))
    assert [(Path(s.source).name, s.label, s.split, s.box) for s in table.samples] == [
        ("p1.png", "happy", "", (10, 5, 20, 20)),
        ("p1.png", "angry", "", (40, 30, 35, 20)),
        ("p2.jpg", "neutral", "", (0, 0, 30, 30)),
    ]
    first, second = (_pixels(table, s) for s in table.samples[:2])
    assert first.shape == (20, 20) and (first == 200).all()
    assert second.shape == (20, 35) and (second == 100).all()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p2.jpg 0 0 0 30 30 3.0", r"label\.lst:line 2: expected 8 fields"),
        ("p2.jpg 0 0 0 30 30 3.0 7", r"label\.lst:line 2: expression '7' is not an ExpW label"),
        ("p2.jpg 0 0 30 20 30 3.0 1", r"label\.lst:line 2: face box top=0 left=30 right=20"),
        ("p2.jpg 0 0 x 30 30 3.0 1", r"label\.lst:line 2: face_id and the box"),
        ("gone.jpg 0 0 0 30 30 3.0 1", r"1 of 2 photos listed in label\.lst do not exist, e\.g\. .*label\.lst:line 2: .*gone\.jpg"),
    ],
)
def test_expw_errors_name_the_line(tmp_path, line, message):
    with pytest.raises(FerlabError, match=message):
        read_expw(_expw(tmp_path, [EXPW_LINES[0], line]))


# --- RAF-DB ------------------------------------------------------------------

RAFDB_LINES = ["train_00001.jpg 4", "train_00002.jpg 1", "test_0001.jpg 7"]


def _rafdb(root: Path, labels: str, images: str, aligned: bool) -> Path:
    (root / labels).parent.mkdir(parents=True, exist_ok=True)
    (root / labels).write_text("\n".join(RAFDB_LINES) + "\n")
    for i, line in enumerate(RAFDB_LINES):
        name = Path(line.split()[0])
        _image(root / images / (f"{name.stem}_aligned.jpg" if aligned else name.name), 40 * i)
    return root


@pytest.mark.parametrize(
    ("labels", "images", "aligned"),
    [
        ("EmoLabel/list_patition_label.txt", "Image/aligned", True),
        ("EmoLabel/list_patition_label.txt", "Image/original", False),
        ("list_patition_label.txt", "aligned", True),  # Kaggle copies
        ("list_patition_label.txt", "Image", False),
    ],
)
def test_rafdb_layouts(tmp_path, labels, images, aligned):
    table = read_rafdb(_rafdb(tmp_path, labels, images, aligned))
    assert [(s.label, s.split) for s in table.samples] == [("happy", "train"), ("surprise", "train"), ("neutral", "test")]
    assert all(Path(s.source).parent == tmp_path / images for s in table.samples)
    assert _pixels(table, table.samples[2]).mean() == pytest.approx(80, abs=2)


def test_rafdb_prefers_aligned_images_and_is_found_one_folder_down(tmp_path):
    root = _rafdb(tmp_path / "basic", "EmoLabel/list_patition_label.txt", "Image/original", False)
    _rafdb(root, "EmoLabel/list_patition_label.txt", "Image/aligned", True)
    table = open_dataset(root)
    assert Path(table.samples[0].source) == root / "Image" / "aligned" / "train_00001_aligned.jpg"
    flat = _rafdb(tmp_path / "kaggle", "DATASET/list_patition_label.txt", "DATASET/aligned", True)
    assert len(open_dataset(flat)) == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00002.jpg 8", r"list_patition_label\.txt:line 2: label '8' is not a RAF-DB label"),
        ("train_00002.jpg", r"list_patition_label\.txt:line 2: expected 'image_name label'"),
        ("extra_0001.jpg 1", r"list_patition_label\.txt:line 2: image name 'extra_0001\.jpg' does not start with"),
        ("train_00099.jpg 1", r"1 of 2 images listed in list_patition_label\.txt do not exist, e\.g\. .*line 2: .*train_00099_aligned\.jpg"),
    ],
)
def test_rafdb_errors_name_the_line(tmp_path, line, message):
    root = _rafdb(tmp_path, "EmoLabel/list_patition_label.txt", "Image/aligned", True)
    (root / "EmoLabel/list_patition_label.txt").write_text(f"{RAFDB_LINES[0]}\n{line}\n")
    with pytest.raises(FerlabError, match=message):
        read_rafdb(root)


# --- FER+ --------------------------------------------------------------------

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# (Usage, name, votes over neutral..contempt, unknown, NF); rows line up with _fer2013 below.
FERPLUS_ROWS = [
    "Training,fer0000000.png,2,8,0,0,0,0,0,0,0,0",  # happy
    "Training,,0,0,0,0,0,0,0,0,0,10",  # dropped by FER+
    "Training,fer0000001.png,4,0,0,0,0,0,0,0,6,0",  # majority: unknown wins; soft: neutral
    "Training,fer0000002.png,5,0,0,5,0,0,0,0,0,0",  # majority: tie; soft: sad (canonical order)
    "PublicTest,fer0000003.png,0,0,0,0,7,0,0,3,0,0",  # angry
    "PrivateTest,fer0000004.png,0,0,4,0,0,0,3,0,2,1",  # surprise
    "PrivateTest,fer0000005.png,0,0,0,0,0,0,0,0,3,7",  # no emotion votes
]
FER_USAGE = ["Training"] * 4 + ["PublicTest"] + ["PrivateTest"] * 2


def _ferplus(folder: Path, rows: list[str] = FERPLUS_ROWS, usage: list[str] = FER_USAGE) -> Path:
    """fer2013new.csv plus a fer2013.csv beside it whose row i is a uniform 4x4 image of value 10*i."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fer2013.csv").write_text(
        "emotion,pixels,Usage\n" + "".join(f"0,{' '.join([str(10 * i)] * 16)},{u}\n" for i, u in enumerate(usage)))
    votes = folder / "fer2013new.csv"
    votes.write_text("\n".join([FERPLUS_HEADER, *rows]) + "\n")
    return votes


def test_ferplus_majority_aligned_with_fer2013(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ferlab.data.ferplus"):
        table = open_dataset(_ferplus(tmp_path))
    assert [(s.label, s.split, s.votes) for s in table.samples] == [
        ("happy", "train", ()), ("angry", "val", ()), ("surprise", "test", ())]
    assert [int(_pixels(table, s)[0, 0]) for s in table.samples] == [0, 40, 50]  # FER2013 rows 0, 4, 5
    assert table.samples[0].source.endswith("fer2013.csv:row 2")
    assert "kept 3 of 7 rows" in caplog.text
    for dropped in ("1 without an image", "1 where unknown", "1 with a tie", "1 without emotion votes"):
        assert dropped in caplog.text


def test_ferplus_soft_votes(tmp_path):
    table = read_ferplus(_ferplus(tmp_path), mode="soft")
    assert open_dataset(_ferplus(tmp_path / "again"), soft_labels=True).label_counts() == table.label_counts()
    assert [s.label for s in table.samples] == ["happy", "neutral", "sad", "angry", "surprise"]
    assert table.samples[0].votes == (("happy", 0.8), ("neutral", 0.2))
    assert table.samples[1].votes == (("neutral", 1.0),)
    assert dict(table.samples[4].votes) == pytest.approx({"fear": 3 / 7, "surprise": 4 / 7})
    assert all(sum(share for _, share in s.votes) == pytest.approx(1) for s in table.samples)


def test_ferplus_images_from_png_folder(tmp_path):
    votes = _ferplus(tmp_path / "votes")
    for i, split in enumerate(["Train", "Train", "Train", "Valid", "Test", "Test"]):
        _image(tmp_path / "png" / f"FER2013{split}" / f"fer{i:07d}.png", 10 * i)
    table = read_ferplus(votes, tmp_path / "png")
    assert [Path(s.source).relative_to(tmp_path / "png").as_posix() for s in table.samples] == [
        "FER2013Train/fer0000000.png", "FER2013Valid/fer0000003.png", "FER2013Test/fer0000004.png"]
    assert [int(_pixels(table, s)[0, 0]) for s in table.samples] == [0, 30, 40]


@pytest.mark.parametrize(
    ("rows", "usage", "message"),
    [
        ([FERPLUS_ROWS[0], "Training,fer0000001.png,x,0,0,0,0,0,0,0,0,0"], None,
         r"fer2013new\.csv:row 3: column 'neutral': 'x' is not a vote count"),
        ([FERPLUS_ROWS[0], "Holdout,fer0000001.png,1,0,0,0,0,0,0,0,0,0"], None,
         r"fer2013new\.csv:row 3: Usage 'Holdout'"),
        (FERPLUS_ROWS[:3], None, r"fer2013new\.csv has 3 rows but .*fer2013\.csv has 7"),
        (FERPLUS_ROWS, ["Training"] * 7,
         r"fer2013new\.csv:row 6 \(val\) and .*fer2013\.csv:row 6 \(train\) disagree on the split"),
    ],
)
def test_ferplus_errors_name_the_row(tmp_path, rows, usage, message):
    votes = _ferplus(tmp_path, rows, usage or FER_USAGE)
    with pytest.raises(FerlabError, match=message):
        read_ferplus(votes)


def test_ferplus_missing_pngs_are_listed(tmp_path):
    votes = _ferplus(tmp_path / "votes")
    _image(tmp_path / "png" / "fer0000000.png")
    with pytest.raises(FerlabError, match=r"5 of 6 images named in .*fer2013new\.csv are not under .*png, e\.g\. .*row 4: fer0000001\.png"):
        read_ferplus(votes, tmp_path / "png")


def test_ferplus_needs_its_header(tmp_path):
    path = tmp_path / "fer2013new.csv"
    path.write_text("Usage,Image name,neutral\nTraining,fer0000000.png,10\n")
    with pytest.raises(FerlabError, match=r"fer2013new\.csv: no columns \['happiness'"):
        open_dataset(path)


# --- dispatch and training ---------------------------------------------------


def test_unknown_csv_header_lists_the_accepted_ones(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("file,emotion_name\n")
    with pytest.raises(FerlabError, match=r"other\.csv: unknown CSV header .*expected one of: path,label.*emotion,pixels.*Image name"):
        open_dataset(path)


@pytest.fixture
def every_format(tmp_path) -> dict[str, Path]:
    _image(tmp_path / "manifest" / "a.png")
    _image(tmp_path / "manifest" / "b.png")
    return {
        "manifest": _manifest(tmp_path / "manifest", ["a.png,happy,train", "b.png,sad,train"]),
        "expw": _expw(tmp_path / "expw", EXPW_LINES),
        "rafdb": _rafdb(tmp_path / "rafdb", "EmoLabel/list_patition_label.txt", "Image/aligned", True),
        "ferplus": _ferplus(tmp_path / "ferplus"),
        "ferplus folder": (tmp_path / "ferplus"),
    }


def test_open_dataset_dispatches_and_image_dataset_consumes_each(every_format):
    origins = {}
    for name, path in every_format.items():
        table = open_dataset(path)
        data = ImageDataset(table, table.classes(), Preprocessing())
        assert len(data) == len(table) and data.pixels.shape[1:] == (1, 48, 48)
        assert data.targets.tolist() == [table.classes().index(s.label) for s in table.samples]
        origins[name] = table.origin
    assert origins == {
        "manifest": str(every_format["manifest"]),
        "expw": str(every_format["expw"]),
        "rafdb": str(every_format["rafdb"]),
        "ferplus": str(every_format["ferplus"]),
        "ferplus folder": str(every_format["ferplus"]),
    }
