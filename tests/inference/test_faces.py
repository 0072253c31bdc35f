import math

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.data import ImageDataset, Preprocessing, open_dataset, to_pixels
from ferlab.data.framing import Framing
from ferlab.errors import FerlabError
from ferlab.inference.detect import Face, create_detector
from ferlab.inference.faces import face_pixels, load_image

GRAY48 = Preprocessing(48, 1, (0.5,), (0.5,))
EXIF_ORIENTATION = 0x0112


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("prep", [GRAY48, Preprocessing(40, 3, (0.5,) * 3, (0.2,) * 3)], ids=["gray48", "rgb40"])
def test_a_whole_crop_gets_exactly_the_training_pixels(tree, prep):
    """A 48x48 crop through detector none with no margin equals ImageDataset's pixels, resized or not."""
    table = open_dataset(tree).split("val")
    expected = ImageDataset(table, ("angry", "happy", "neutral"), prep).pixels
    detector = create_detector("none")
    for sample, pixels in zip(table.samples, expected):
        image = load_image(sample.source)
        got = face_pixels(image, detector.detect(image), prep, Framing(margin=0))
        assert got.dtype == np.uint8 and got.shape == (1, prep.channels, prep.input_size, prep.input_size)
        assert np.array_equal(got[0], pixels)


def test_the_crop_is_a_square_around_the_box_grown_by_the_margin():
    image = noise(200, 200)
    prep = Preprocessing(80, 3, (0.5,) * 3, (0.5,) * 3)
    face = Face((50, 60, 30, 40), 1.0)
    # margin 0: the 40-pixel square centred on the box (x 45..85, y 60..100), resized to 80.
    tight = face_pixels(image, [face], prep, Framing(margin=0))
    assert np.array_equal(tight[0], to_pixels(Image.fromarray(image[60:100, 45:85]), prep))
    # margin 1: a side of 80 around the same centre (x 25..105, y 40..120), at its own size.
    loose = face_pixels(image, [face, face], prep, Framing(margin=1.0))
    assert loose.shape == (2, 3, 80, 80)
    assert np.array_equal(loose[1], image[40:120, 25:105].transpose(2, 0, 1))


def test_the_framing_scales_by_the_chosen_side_and_shifts_the_centre():
    image = noise(300, 300)
    prep = Preprocessing(96, 3, (0.5,) * 3, (0.5,) * 3)
    face = Face((100, 80, 60, 90), 1.0)  # centre (130, 125)
    # By the width: side 1.6 x 60 = 96; centre moved up 0.25 x 60 = 15 -> (130, 110): x 82..178, y 62..158.
    by_width = Framing(margin=0.6, scale_by="width", offset_y=-0.25)
    assert np.array_equal(face_pixels(image, [face], prep, by_width)[0],
                       image[62:158, 82:178].transpose(2, 0, 1))
    # By the height, tighter than the box: side 0.8 x 90 = 72; centre right 0.1 x 90 = 9 -> (139, 125).
    by_height = Framing(margin=-0.2, scale_by="height", offset_x=0.1)
    expected = to_pixels(Image.fromarray(image[89:161, 103:175]), prep)
    assert np.array_equal(face_pixels(image, [face], prep, by_height)[0], expected)


def test_the_resampling_filter_of_the_framing_is_used():
    image = noise(200, 200)
    face = Face((50, 50, 100, 100), 1.0)
    crop = Image.fromarray(image[50:150, 50:150])
    for name, resample in (("nearest", Image.Resampling.NEAREST), ("lanczos", Image.Resampling.LANCZOS)):
        got = face_pixels(image, [face], GRAY48, Framing(margin=0, resample=name))[0]
        assert np.array_equal(got, to_pixels(crop, GRAY48, resample))
    assert not np.array_equal(face_pixels(image, [face], GRAY48, Framing(margin=0, resample="nearest")),
                           face_pixels(image, [face], GRAY48, Framing(margin=0, resample="bicubic")))


def test_parts_outside_the_image_repeat_its_edge():
    image = np.tile(np.arange(100, 200, dtype=np.uint8)[None, :, None], (100, 1, 3))  # columns 100..199
    prep = Preprocessing(40, 3, (0.5,) * 3, (0.5,) * 3)
    crop = face_pixels(image, [Face((0, 0, 20, 20), 1.0)], prep, Framing(margin=1.0))[0]  # x -10..30
    assert np.all(crop[:, :, :10] == 100)
    assert np.array_equal(crop[0, 0, 10:], np.arange(100, 130, dtype=np.uint8))


def _dark_centres(crop: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Centroids (x, y) of the dark pixels in the left and right halves of a gray crop (1, S, S)."""
    ys, xs = np.nonzero(crop[0] < 64)
    half = crop.shape[-1] / 2
    return tuple((xs[m].mean(), ys[m].mean()) for m in (xs < half, xs >= half))


@pytest.mark.parametrize("tilt", [25.0, -18.0])
def test_alignment_levels_tilted_eyes(tilt):
    image = np.full((200, 200, 3), 200, dtype=np.uint8)
    dx, dy = 30 * math.cos(math.radians(tilt)), 30 * math.sin(math.radians(tilt))
    right_eye, left_eye = (100 - dx, 90 - dy), (100 + dx, 90 + dy)  # the person's right eye is on the image's left
    for x, y in (right_eye, left_eye):
        cv2.circle(image, (round(x), round(y)), 6, (0, 0, 0), -1)
    face = Face((50, 50, 100, 100), 0.9, (right_eye, left_eye, (100.0, 110.0), (85.0, 130.0), (115.0, 130.0)))
    prep = Preprocessing(100, 1, (0.5,), (0.5,))
    (x0, y0), (x1, y1) = _dark_centres(face_pixels(image, [face], prep, Framing(margin=0, align=True))[0])
    assert abs(y1 - y0) < 1.0 and abs((x1 - x0) - 60) < 1.5
    (_, y0), (_, y1) = _dark_centres(face_pixels(image, [face], prep, Framing(margin=0, align=False))[0])
    assert abs((y1 - y0) - 2 * dy) < 1.0
    # Without landmarks there is nothing to align by.
    plain = Face(face.box, face.score)
    assert np.array_equal(face_pixels(image, [plain], prep, Framing(align=True)), face_pixels(image, [plain], prep, Framing(align=False)))


def test_no_faces_give_an_empty_batch():
    image = np.full((120, 160, 3), 128, dtype=np.uint8)
    assert create_detector("haar").detect(image) == []
    assert face_pixels(image, [], GRAY48).shape == (0, 1, 48, 48)


def test_rgb_files_and_arrays(tmp_path):
    image = noise(30, 40)
    Image.fromarray(image).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, image)
    assert np.array_equal(load_image(str(tmp_path / "a.png")), image)
    assert np.array_equal(load_image(image), image)
    gray = image[:, :, 0]
    assert np.array_equal(load_image(gray), np.repeat(gray[:, :, None], 3, axis=2))
    with pytest.raises(FerlabError, match="uint8"):
        load_image(image.astype(np.float32))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    loaded = load_image(tmp_path / "deep.png")
    assert loaded.shape == (1, 4, 3)
    assert loaded[0, :, 0].tolist() == [0, 1, 128, 255] and np.all(loaded == loaded[:, :, :1])


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.array([[[0, 0, 0, 0], [255, 0, 0, 255], [0, 0, 255, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    expected = [[255, 255, 255], [255, 0, 0], [127, 127, 255]]
    assert load_image(tmp_path / "clear.png")[0].tolist() == expected
    assert load_image(rgba)[0].tolist() == expected
    gray_alpha = Image.fromarray(np.array([[[50, 0], [50, 255]]], dtype=np.uint8), "LA")
    assert load_image(gray_alpha)[0].tolist() == [[255] * 3, [50] * 3]
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 200, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png")[0].tolist() == [[255, 255, 255], [0, 200, 0]]


def test_cmyk_jpegs_become_rgb(tmp_path):
    cmyk = np.zeros((32, 64, 4), dtype=np.uint8)
    cmyk[:, 32:, 1:3] = 255  # right half: full magenta and yellow, i.e. red
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "print.jpg", quality=95)
    loaded = load_image(tmp_path / "print.jpg").astype(int)
    assert loaded.shape == (32, 64, 3)
    assert np.abs(loaded[8:24, 4:28] - 255).max() < 12
    assert np.abs(loaded[8:24, 36:60] - [255, 0, 0]).max() < 12


def test_exif_orientation_is_honoured(tmp_path):
    raw = np.zeros((40, 80, 3), dtype=np.uint8)
    raw[:20, :40] = (255, 0, 0)  # red top-left quadrant as stored
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # shown turned 90 degrees clockwise
    Image.fromarray(raw).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg")
    assert upright.shape == (80, 40, 3)
    assert upright[10:30, 25:35, 0].min() > 200 and upright[50:70, 5:15, 0].max() < 50  # red now top-right
    with Image.open(tmp_path / "phone.jpg") as opened:
        assert np.array_equal(load_image(opened), upright)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(FerlabError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(FerlabError, match=r"cannot read image .*notes\.jpg"):
        load_image(tmp_path / "notes.jpg")
    Image.fromarray(noise(64, 64)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FerlabError, match=r"cannot read image .*cut\.jpg"):
        load_image(tmp_path / "cut.jpg")
    Image.fromarray(np.zeros((2, 2), dtype=np.float32), "F").save(tmp_path / "float.tif")
    with pytest.raises(FerlabError, match=r"float\.tif: floating-point images are not supported"):
        load_image(tmp_path / "float.tif")


def test_huge_images_are_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (2000, 1000)).save(tmp_path / "huge.png")
    monkeypatch.setattr("ferlab.inference.faces.decode_image", lambda *args: pytest.fail("decoded a huge image"))
    with pytest.raises(FerlabError, match=r"huge\.png is 2000x1000 = 2,000,000 pixels, above the limit of 1,000,000"):
        load_image(tmp_path / "huge.png", max_pixels=1_000_000)
    with pytest.raises(FerlabError, match="above the limit"):
        load_image(np.zeros((1000, 2000, 3), dtype=np.uint8), max_pixels=1_000_000)
    with pytest.raises(FerlabError, match="above the limit"):
        load_image(Image.new("RGB", (2000, 1000)), max_pixels=1_000_000)
