import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.errors import FerlabError
from ferlab.inference import Face, FaceResult, Recognizer
from tests.inference.test_video import write_video
from tests.serving.ports import free_port

pytest.importorskip("gradio")
from ferlab.serving.app import Demo, build_app, face_table

pytestmark = [  # gradio 6.31's queue calls pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def demo(trained_run):
    return Demo([trained_run], backend="torch")


@pytest.fixture(scope="module")
def crop(tree):
    return next((tree / "val" / "happy").iterdir())


def test_face_table_gives_each_face_its_own_bars():
    results = [FaceResult(Face((0, 0, 4, 4), 0.9), "b", {"a": 0.25, "b": 0.75}),
               FaceResult(Face((5, 0, 4, 4), 0.8), "a", {"a": 0.6, "b": 0.4})]
    table = face_table(results, ["a", "b"])
    assert table.to_dict("records") == [
        {"face": "#0", "bar": "#0 a", "class": "a", "probability": 0.25},
        {"face": "#0", "bar": "#0 b", "class": "b", "probability": 0.75},
        {"face": "#1", "bar": "#1 a", "class": "a", "probability": 0.6},
        {"face": "#1", "bar": "#1 b", "class": "b", "probability": 0.4},
    ]
    assert list(face_table([], ["a", "b"]).columns) == ["face", "bar", "class", "probability"]


def test_image_tab_annotates_charts_and_answers_like_the_recognizer(demo, trained_run, crop):
    expected = Recognizer(trained_run, "none", backend="torch").recognize(crop)[0]
    shown, table, answer = demo.image(str(crop), "none", "none")
    pixels = np.asarray(Image.open(crop).convert("RGB"))
    assert shown.shape == pixels.shape and shown.dtype == np.uint8
    assert (shown != pixels).any()  # the box and caption are drawn
    assert table["probability"].tolist() == pytest.approx([expected.probs[c] for c in demo.recognizer().classes])
    assert table["face"].unique().tolist() == ["#0"]
    assert answer["faces"] == [json.loads(json.dumps(expected.to_dict()))]
    assert (answer["model"], answer["backend"], answer["detector"], answer["tta"]) == (trained_run.name, "torch",
                                                                                        "none", "none")
    assert answer["faces"][0]["label"] == "happy"


def test_no_face_found_gives_the_image_back_and_empty_results(demo):
    blank = np.full((120, 160, 3), 90, np.uint8)
    shown, table, answer = demo.image(blank, "haar", "none")
    np.testing.assert_array_equal(shown, blank)
    assert table.empty and answer["faces"] == []


def test_bad_inputs_are_clear_errors(demo, tmp_path):
    with pytest.raises(FerlabError, match="no image"):
        demo.image(None)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(FerlabError, match="notes.png"):
        demo.image(str(text), "none")
    with pytest.raises(FerlabError, match="no video"):
        demo.video(None)
    with pytest.raises(FerlabError, match="no model"):
        Demo([])
    with pytest.raises(FerlabError, match="unknown detector"):
        build_app(["unused"], detector="mtcnn")


def test_detector_and_tta_choices_share_one_classifier(demo):
    flip = demo.recognizer(0, "none", "flip")
    assert demo.recognizer(0, "none", "flip") is flip
    assert flip.tta == "flip" and demo.recognizer(0, "haar", "none").model is flip.model


def test_webcam_frame_and_video_tab(demo, crop, tmp_path):
    assert demo.frame(None) is None
    frame = np.asarray(Image.open(crop).convert("RGB"))
    assert (demo.frame(frame, "none") != frame).any()
    canvas = np.full((120, 160, 3), 90, np.uint8)
    canvas[:48, :48] = frame
    video, plot = demo.video(str(write_video(tmp_path / "clip.mp4", [canvas] * 4)), "none", "none", 2)
    capture = cv2.VideoCapture(video)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    assert Image.open(plot).size[0] > 100


def test_compare_runs_each_model_on_the_same_image(trained_run, crop):
    pair = Demo([trained_run, trained_run / "model.safetensors"], backend="torch")
    first_image, first_table, first_answer, second_image, second_table, second_answer = pair.compare(str(crop), "none")
    np.testing.assert_array_equal(first_image, second_image)
    assert first_table.equals(second_table)
    assert (first_answer["model"], second_answer["model"]) == (trained_run.name, "model.safetensors")
    assert first_answer["faces"] == second_answer["faces"]


def api_names(app):
    return {fn.api_name for fn in app.fns.values()}


def test_compare_tab_only_with_several_models(trained_run):
    assert api_names(build_app([trained_run], backend="torch")) >= {"image", "frame", "video"}
    assert "compare" not in api_names(build_app([trained_run], backend="torch"))
    assert "compare" in api_names(build_app([trained_run, trained_run], backend="torch"))


@pytest.fixture(scope="module")
def served(trained_run):
    """`ferlab serve` running on loopback, as a user starts it; its URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ferlab.cli", "serve", "--model", str(trained_run), "--detector",
                               "none", "--backend", "torch", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"ferlab serve exited: {server.stderr.read()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("ferlab serve did not listen within 60 s")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def test_served_app_answers_an_uploaded_photo(served, crop):
    from gradio_client import Client, handle_file

    client = Client(served, verbose=False)
    shown, chart, answer = client.predict(handle_file(str(crop)), "none", "none", api_name="/image")
    assert Image.open(shown).size == Image.open(crop).size
    assert answer["faces"][0]["label"] == "happy" and answer["faces"][0]["box"] == [0, 0, 48, 48]
    assert len(chart["data"]) == len(answer["faces"][0]["probs"])
    with pytest.raises(Exception, match="no image"):
        client.predict(None, "none", "none", api_name="/image")



def browser():
    """Headless Debian chromium through Selenium; skips where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def test_browser_upload_shows_the_annotated_photo_and_chart(served, crop, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    try:
        driver.get(served)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
        upload.send_keys(str(crop))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "img[src*='/file=']"))
        driver.find_element(By.XPATH, "//button[normalize-space()='Recognise']").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img[src*='/file=']")) >= 2)
        chart = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg"))
        wait.until(lambda d: '"happy"' in d.find_element(By.TAG_NAME, "body").text)  # the JSON
        shot = Path(os.environ.get("FERLAB_TEST_ARTIFACTS", tmp_path)) / "serve-image-tab.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    assert chart and Image.open(shot).size[0] > 0


# Hostile uploads (issue 20 item 10): refused from their size or header, with ferlab's message.


def huge_png(path: Path) -> Path:
    """13000x13000 = 169 M pixels in some 20 kB: 1-bit blank."""
    Image.new("1", (13000, 13000)).save(path)
    return path


@pytest.mark.hostile
def test_image_tab_checks_pixels_from_the_header_before_decoding(demo, tmp_path):
    start = time.perf_counter()
    with pytest.raises(FerlabError, match=r"huge.png is 13000x13000 = 169,000,000 pixels"):
        demo.image(str(huge_png(tmp_path / "huge.png")), "none")
    assert time.perf_counter() - start < 1


@pytest.mark.hostile
def test_served_app_refuses_bad_uploads_with_ferlabs_message(served, tmp_path):
    from gradio_client import Client, handle_file

    bad = {"empty.png": (b"", "empty"), "notes.png": (b"name,label\nx,happy\n", "not an image"),
           "drawing.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', "not an image"),
           "doc.pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "not an image")}
    client = Client(served, verbose=False)
    for name, (data, says) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(Exception, match=f"{name} is {says}") as refused:
            client.predict(handle_file(str(tmp_path / name)), "none", "none", api_name="/image")
        assert "/gradio/" not in str(refused.value), "the message names the server's cache path"
    start = time.perf_counter()
    with pytest.raises(Exception, match="huge.png is 13000x13000 = 169,000,000 pixels"):
        client.predict(handle_file(str(huge_png(tmp_path / "huge.png"))), "none", "none", api_name="/image")
    assert time.perf_counter() - start < 2


@pytest.mark.hostile
def test_served_app_refuses_an_upload_above_its_size_limit(served):
    import httpx

    from ferlab.serving.app import MAX_UPLOAD_BYTES

    upload = f"{served}gradio_api/upload"
    answer = httpx.post(upload, files={"files": ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1))}, timeout=60)
    assert answer.status_code == 413, answer.text[:200]
    assert httpx.post(upload, files={"files": ("small.png", b"\0" * 1000)}, timeout=60).status_code == 200
