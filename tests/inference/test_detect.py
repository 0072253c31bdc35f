import io
import re
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.errors import FerlabError
from ferlab.inference import detect as detect_module
from ferlab.inference.detect import DETECTORS, YUNET_SHA256, YUNET_URL, Face, create_detector, yunet_model
from ferlab.inference.faces import load_image

WILD = Path(__file__).resolve().parents[3] / "shared" / "data" / "wild"
YUNET = Path(__file__).resolve().parents[3] / "shared" / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
needs_yunet = pytest.mark.skipif(not YUNET.is_file(), reason="no ../shared YuNet model")
needs_photos = pytest.mark.skipif(not (WILD / "README.md").is_file(), reason="no ../shared photos")


def draw_face(image: np.ndarray, cx: int, cy: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Draw a schematic frontal face (skin, brows, eyes, nose, mouth) that both detectors find.

    Returns the centres of the eye on the image's left and the one on its right.
    """
    s = size
    cv2.ellipse(image, (cx, cy), (int(s * 0.42), int(s * 0.55)), 0, 0, 360, (200, 160, 140), -1, cv2.LINE_AA)
    eyes = []
    for side in (-1, 1):
        ex, ey = cx + side * int(s * 0.18), cy - int(s * 0.1)
        brow = max(1, int(s * 0.025))
        cv2.ellipse(image, (ex, ey - int(s * 0.1)), (int(s * 0.1), int(s * 0.03)), 0, 180, 360, (60, 40, 30), brow)
        cv2.ellipse(image, (ex, ey), (int(s * 0.08), int(s * 0.04)), 0, 0, 360, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(image, (ex, ey), int(s * 0.035), (40, 30, 20), -1, cv2.LINE_AA)
        eyes.append((ex, ey))
    nose = max(1, int(s * 0.02))
    cv2.line(image, (cx, cy - int(s * 0.05)), (cx - int(s * 0.04), cy + int(s * 0.12)), (150, 110, 100), nose)
    cv2.ellipse(image, (cx, cy + int(s * 0.25)), (int(s * 0.15), int(s * 0.05)), 0, 0, 360, (150, 60, 60), -1)
    return eyes[0], eyes[1]


def scene(faces: list[tuple[int, int, int]], size: tuple[int, int] = (300, 600)) -> np.ndarray:
    """An RGB image (H, W, 3) with a drawn face per (cx, cy, size)."""
    image = np.full((*size, 3), 90, dtype=np.uint8)
    for cx, cy, s in faces:
        draw_face(image, cx, cy, s)
    return image


def centre(face: Face) -> tuple[float, float]:
    x, y, w, h = face.box
    return x + w / 2, y + h / 2


def test_face_to_dict():
    face = Face((1, 2, 30, 40), 0.5, ((1.0, 2.0),) * 5)
    assert face.to_dict() == {"box": [1, 2, 30, 40], "score": 0.5, "landmarks": [[1.0, 2.0]] * 5}
    assert Face((0, 0, 5, 5), 1.0).to_dict()["landmarks"] is None


def test_bad_options_are_refused():
    assert DETECTORS == ("auto", "yunet", "haar", "none")
    with pytest.raises(FerlabError, match="unknown face detector 'mtcnn'; choose one of auto, yunet, haar, none"):
        create_detector("mtcnn")
    with pytest.raises(FerlabError, match="yunet detector only"):
        create_detector("haar", score_threshold=0.5)
    with pytest.raises(FerlabError, match="at least 1"):
        create_detector("haar", min_face=0)
    with pytest.raises(FerlabError, match="RGB uint8 image"):
        create_detector("none").detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(FerlabError, match="RGB uint8 image"):
        create_detector("haar").detect(np.zeros((10, 10, 3), dtype=np.float32))


def test_none_is_one_face_covering_the_image():
    assert create_detector("none").detect(np.zeros((30, 40, 3), dtype=np.uint8)) == [Face((0, 0, 40, 30), 1.0)]


def test_haar_finds_drawn_faces_left_to_right():
    faces = create_detector("haar").detect(scene([(420, 150, 120), (150, 150, 160)]))
    assert len(faces) == 2
    for face, (cx, cy, size) in zip(faces, [(150, 150, 160), (420, 150, 120)]):
        assert face.landmarks is None and face.score == 1.0
        assert abs(centre(face)[0] - cx) < 0.1 * size and abs(centre(face)[1] - cy) < 0.1 * size
        assert 0.9 * size < face.box[2] < 1.4 * size


def test_no_face_gives_an_empty_list():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (9, 9), 3)
    assert create_detector("haar").detect(image) == []


def test_min_face_drops_small_faces():
    image = scene([(150, 150, 160), (420, 150, 70)])
    assert len(create_detector("haar").detect(image)) == 2
    big = create_detector("haar", min_face=120).detect(image)
    assert len(big) == 1 and abs(centre(big[0])[0] - 150) < 16


def test_big_images_are_downscaled_and_boxes_mapped_back():
    image = scene([(1500, 600, 640)], size=(1200, 2400))
    full = create_detector("haar", max_side=2400, min_face=300).detect(image)
    small = create_detector("haar", max_side=600).detect(image)
    assert len(full) == len(small) == 1
    assert np.allclose(small[0].box, full[0].box, atol=0.06 * 640)
    assert abs(centre(small[0])[0] - 1500) < 64 and abs(centre(small[0])[1] - 600) < 64


def test_yunet_offline_without_a_copy_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(FerlabError) as caught:
        create_detector("yunet")
    message = str(caught.value)
    for part in ("cannot download", YUNET_URL, YUNET_SHA256, "--detector-model", "FERLAB_YUNET", "haar",
                 str(tmp_path / "cache" / "ferlab" / "face_detection_yunet_2023mar.onnx")):
        assert part in message
    with pytest.raises(FerlabError, match="no YuNet model in"):
        yunet_model(download=False)


def test_a_file_with_the_wrong_sha256_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(FerlabError, match=re.escape(f"{fake} is not the YuNet model ferlab expects")):
        create_detector("yunet", model_path=fake)
    cached = tmp_path / "cache" / "ferlab" / "face_detection_yunet_2023mar.onnx"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a damaged copy")
    with pytest.raises(FerlabError, match=f"expected {YUNET_SHA256}"):
        yunet_model()
    with pytest.raises(FerlabError, match="no YuNet model file at"):
        yunet_model(tmp_path / "missing.onnx")


@needs_yunet
def test_yunet_is_downloaded_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    def fake_download(url, timeout=None):
        calls.append(url)
        return YUNET.open("rb")

    monkeypatch.setattr("urllib.request.urlopen", fake_download)
    cached = tmp_path / "cache" / "ferlab" / "face_detection_yunet_2023mar.onnx"
    assert yunet_model() == cached
    assert yunet_model() == cached
    assert calls == [YUNET_URL]
    assert create_detector("yunet").name == "yunet"
    assert create_detector("auto").name == "yunet"  # the cached copy, now that there is one


def test_a_download_with_the_wrong_content_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout=None: io.BytesIO(b"a captive portal page"))
    with pytest.raises(FerlabError, match="is not the YuNet model ferlab expects"):
        yunet_model()
    assert not any((tmp_path / "cache" / "ferlab").iterdir())


def test_auto_is_haar_with_one_warning_until_a_yunet_copy_is_at_hand(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FERLAB_YUNET", raising=False)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("auto must never download"))
    detect_module._warn_haar.cache_clear()
    with caplog.at_level("WARNING", logger="ferlab.inference.detect"):
        assert create_detector("auto").name == "haar" == create_detector("auto").name
    assert caplog.text.count("face detector auto: using haar") == 1 and "--detector yunet" in caplog.text
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not the model")
    monkeypatch.setenv("FERLAB_YUNET", str(fake))
    with pytest.raises(FerlabError, match="is not the YuNet model ferlab expects"):  # a wrong copy is an error
        create_detector("auto")


@needs_yunet
def test_yunet_landmarks_survive_downscaling():
    image = scene([(300, 300, 300)], size=(600, 600))
    (left_x, left_y), (right_x, right_y) = draw_face(image, 300, 300, 300)
    faces = create_detector("yunet", model_path=YUNET, max_side=300).detect(image)
    assert len(faces) == 1 and 0.8 <= faces[0].score <= 1.0
    # The person's right eye is on the image's left.
    (rx, ry), (lx, ly) = faces[0].landmarks[:2]
    assert len(faces[0].landmarks) == 5
    assert abs(rx - left_x) < 15 and abs(ry - left_y) < 15 and abs(lx - right_x) < 15 and abs(ly - right_y) < 15


def _readme_counts() -> dict[str, int]:
    """Photo name -> the face count listed in the wild README's table."""
    rows = re.findall(r"^\| (\S+\.jpg) \| [^|]+ \| (\d+)", (WILD / "README.md").read_text(), flags=re.MULTILINE)
    return {name: int(count) for name, count in rows}


@needs_photos
@needs_yunet
def test_yunet_matches_the_wild_readme_counts():
    counts = _readme_counts()
    assert len(counts) == 5
    # The README counted at full resolution; a larger max_side reproduces that.
    detector = create_detector("yunet", model_path=YUNET, max_side=10_000)
    found = {name: len(detector.detect(load_image(WILD / name))) for name in counts}
    assert found == counts
    # Downscaled, YuNet also finds the large turned-away second face of couple.jpg.
    assert 1 <= len(create_detector("yunet", model_path=YUNET).detect(load_image(WILD / "couple.jpg"))) <= 2


@needs_photos
def test_haar_finds_the_faces_of_simple_photos():
    detector = create_detector("haar")
    assert len(detector.detect(load_image(WILD / "single_face.jpg"))) == 1
    assert len(detector.detect(load_image(WILD / "two_people.jpg"))) == 2


@needs_yunet
def test_yunet_rows_that_are_not_finite_are_no_face(monkeypatch):
    class NanNet:  # OpenCV's detector, answering one face and one row of NaN
        def setInputSize(self, size):
            pass

        def detect(self, image):
            good = np.array([[10, 20, 60, 70, *range(10), 0.95]], dtype=np.float32)
            return 1, np.concatenate([good, np.full((1, 15), np.nan, np.float32)])

    detector = create_detector("yunet", model_path=YUNET)
    monkeypatch.setattr(detector, "_net", NanNet())
    faces = detector.detect(np.zeros((200, 200, 3), np.uint8))
    assert [face.box for face in faces] == [(10, 20, 60, 70)]


@needs_yunet
def test_auto_uses_the_yunet_file_named_by_the_environment(monkeypatch):
    monkeypatch.setenv("FERLAB_YUNET", str(YUNET))
    assert create_detector("auto").name == "yunet" == create_detector("yunet").name


def test_a_detector_with_a_minimum_side_enlarges_small_images_and_maps_boxes_back():
    seen = []

    class Enlarging(detect_module._ScaledDetector):
        min_image_side = 64

        def _raw(self, image, min_side):
            seen.append((image.shape[:2], min_side))
            return np.array([[8.0, 16.0, 48.0, 64.0]]), np.ones(1), None

    faces = Enlarging(min_face=12, max_side=1280).detect(np.zeros((40, 32, 3), dtype=np.uint8))
    assert seen == [((80, 64), 24)]  # the shorter side 32 -> 64; min_face scales with it
    assert [face.box for face in faces] == [(4, 8, 24, 32)]


@needs_yunet
def test_yunet_finds_a_face_photo_smaller_than_its_minimum_side_in_the_photos_own_pixels():
    small = cv2.resize(scene([(240, 300, 280)], size=(600, 480)), (36, 45), interpolation=cv2.INTER_AREA)
    faces = create_detector("yunet", model_path=YUNET, min_face=16).detect(small)
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 0 <= x and 0 <= y and x + w <= 36 and y + h <= 45 and w >= 16
