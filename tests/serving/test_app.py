import base64
import io
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
from ferlab.inference.drawing import annotate, caption
from tests.inference.test_video import streams, write_video
from tests.serving.ports import free_port

pytest.importorskip("gradio")
from ferlab.serving.app import Demo, build_app, face_chart

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


CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def faces(n):
    probs = dict(zip(CLASSES, np.linspace(0.05, 0.3, len(CLASSES)) / np.linspace(0.05, 0.3, len(CLASSES)).sum()))
    return [FaceResult(Face((10 * i, 0, 8, 8), 0.9), "neutral", probs) for i in range(n)]


def drawn_texts(fig):
    """The visible texts of a figure once drawn, with their boxes on the canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = [t for ax in fig.axes if ax.axison for t in [ax.title, *ax.get_xticklabels(), *ax.get_yticklabels()]]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("n", [1, 3, 10])
def test_face_charts_are_numbered_like_the_boxes_and_their_labels_never_overlap(n):
    fig = face_chart(faces(n), CLASSES)
    texts = drawn_texts(fig)
    assert [t for t, _ in texts if t.startswith("#")] == [f"#{i} neutral 0.24" for i in range(n)]
    assert sum(t in CLASSES for t, _ in texts) == len(CLASSES) * (1 if n <= 5 else 2)  # once per row of charts
    for i, (text, box) in enumerate(texts):
        for other, other_box in texts[i + 1:]:
            assert not box.overlaps(other_box), f"{text!r} overlaps {other!r}"
    width, height = fig.get_size_inches()
    assert width <= 13 and height <= 6  # fits the page beside the photo


def test_a_photo_without_faces_gets_a_chart_that_says_so():
    assert [t for t, _ in drawn_texts(face_chart([], CLASSES))] == []
    assert "no face found" in [t.get_text() for t in face_chart([], CLASSES).axes[0].texts]


def test_annotated_faces_carry_the_number_their_chart_has():
    image = np.full((40, 80, 3), 90, np.uint8)
    two = faces(2)
    np.testing.assert_array_equal(annotate(image, two, CLASSES),
                                  annotate(image, two, CLASSES, [caption(r, i) for i, r in enumerate(two)]))
    assert caption(two[1], 1) == "#1 neutral 0.24"


def test_image_tab_annotates_charts_and_answers_like_the_recognizer(demo, trained_run, crop):
    expected = Recognizer(trained_run, "none", backend="torch").recognize(crop)[0]
    shown, chart, answer = demo.image(str(crop), "none", "none")
    pixels = np.asarray(Image.open(crop).convert("RGB"))
    assert shown.shape == pixels.shape and shown.dtype == np.uint8
    assert (shown != pixels).any()  # the box and caption are drawn
    bars = [patch.get_width() for patch in chart.axes[0].patches]
    assert bars == pytest.approx([expected.probs[c] for c in demo.recognizer().classes])
    assert chart.axes[0].get_title().startswith("#0 happy")
    assert answer["faces"] == [json.loads(json.dumps(expected.to_dict()))]
    assert (answer["model"], answer["backend"], answer["detector"], answer["tta"]) == (trained_run.name, "torch",
                                                                                        "none", "none")
    assert answer["faces"][0]["label"] == "happy"


def test_no_face_found_gives_the_image_back_and_empty_results(demo):
    blank = np.full((120, 160, 3), 90, np.uint8)
    shown, chart, answer = demo.image(blank, "haar", "none")
    np.testing.assert_array_equal(shown, blank)
    assert answer["faces"] == [] and not chart.axes[0].patches


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
    video, plot, segments = demo.video(str(write_video(tmp_path / "clip.mp4", [canvas] * 4)), "none", "none", 2)
    capture = cv2.VideoCapture(video)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    assert streams(video)["video"][0] == "h264"  # browsers play it as it is
    assert Image.open(plot).size[0] > 100
    assert segments[["track", "start_s", "frames"]].to_dict("records") == [{"track": 0, "start_s": 0.0, "frames": 4}]
    assert segments["label"].iloc[0] in demo.recognizer().classes  # detector none: the whole frame is the face


def test_compare_runs_each_model_on_the_same_image(trained_run, crop):
    pair = Demo([trained_run, trained_run / "model.safetensors"], backend="torch")
    first_image, first_chart, first_answer, second_image, second_chart, second_answer = pair.compare(str(crop), "none")
    np.testing.assert_array_equal(first_image, second_image)
    assert [p.get_width() for p in first_chart.axes[0].patches] == [p.get_width() for p in second_chart.axes[0].patches]
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


@pytest.mark.slow  # the web app served from a subprocess, as the browser tests: some 8 s to start
def test_served_app_answers_an_uploaded_photo(served, crop):
    from gradio_client import Client, handle_file

    client = Client(served, verbose=False)
    shown, chart, answer = client.predict(handle_file(str(crop)), "none", "none", api_name="/image")
    assert Image.open(shown).size == Image.open(crop).size
    assert answer["faces"][0]["label"] == "happy" and answer["faces"][0]["box"] == [0, 0, 48, 48]
    assert chart["type"] == "matplotlib" and chart["plot"].startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(chart["plot"].split(",", 1)[1]))).size[0] > 100
    with pytest.raises(Exception, match="no image"):
        client.predict(None, "none", "none", api_name="/image")



def browser(*flags):
    """Headless Debian chromium through Selenium, with extra command-line `flags`; skips where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800", *flags):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


@pytest.mark.browser
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
        chart = wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img[src*='/file='], img[src^='data:']")) >= 3)
        wait.until(lambda d: '"happy"' in d.find_element(By.TAG_NAME, "body").text)  # the JSON
        shot = screenshot(driver, "serve-image-tab.png", tmp_path)
    finally:
        driver.quit()
    assert chart and Image.open(shot).size[0] > 0


def screenshot(driver, name, tmp_path):
    """Save the page as FERLAB_TEST_ARTIFACTS/name (kept by CI), else under tmp_path; its path."""
    shot = Path(os.environ.get("FERLAB_TEST_ARTIFACTS", tmp_path)) / name
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    return shot


def open_tab(driver, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']"))[0].click()


def clip_with_a_face(crop, path, frames=20):
    """An H.264 clip (PyAV, as a phone would send) of the crop on grey."""
    from tests.inference.test_video import av_video

    canvas = np.full((120, 160, 3), 90, np.uint8)
    canvas[30:78, 50:98] = np.asarray(Image.open(crop).convert("RGB"))
    return av_video(path, [canvas] * frames)


@pytest.mark.browser
def test_browser_video_tab_plays_the_annotated_clip(served, crop, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip = clip_with_a_face(crop, tmp_path / "clip.mp4")
    driver = browser("--autoplay-policy=no-user-gesture-required")
    try:
        driver.get(served)
        open_tab(driver, "Video")
        wait = WebDriverWait(driver, 120)
        upload = wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "input[type=file]")
                                       if e.get_attribute("accept") and "video" in e.get_attribute("accept")])
        upload[0].send_keys(str(clip))
        wait.until(lambda d: d.find_elements(By.TAG_NAME, "video"))  # the uploaded clip's player
        driver.find_element(By.XPATH, "//button[normalize-space()='Process']").click()
        state = wait.until(lambda d: d.execute_script(
            "const v = document.querySelector('#annotated-video video');"
            "if (!v || !v.currentSrc) return null; v.muted = true; v.play().catch(() => {});"
            "return v.error ? {error: v.error.code, message: v.error.message}"
            "    : v.readyState >= 2 ? {ready: v.readyState, width: v.videoWidth} : null;"))
        rows = wait.until(lambda d: segment_rows(d, labels=("angry", "happy", "neutral")))
        shot = screenshot(driver, "serve-video-tab.png", tmp_path)
    finally:
        driver.quit()
    assert "error" not in state, f"the annotated video does not play: {state}"
    assert state["ready"] >= 2 and state["width"] == 160 and shot.stat().st_size > 0
    assert len(rows) == 1 and rows.pop()[0] == "0", rows  # one tracked face, one segment


def segment_rows(driver, labels):
    """The segments table's rows (cell texts) that name one of `labels`; textContent, as Gradio sizes rows hidden."""
    from selenium.webdriver.common.by import By

    rows = {tuple(cell.get_attribute("textContent").strip() for cell in row.find_elements(By.TAG_NAME, "td"))
            for row in driver.find_elements(By.CSS_SELECTOR, "#segments tbody tr")}
    return {row for row in rows if set(row) & set(labels)}


def y4m(crop, path, frames=20):
    """A Y4M clip (what Chromium's fake camera reads) of the crop on a grey that brightens frame by frame.

    The frames differ because Gradio names an output file by its content's hash: a still camera would give every
    annotated frame one URL, and the test could not tell a live stream from a single frame.
    """
    import av

    face = np.asarray(Image.open(crop).convert("RGB"))
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("wrapped_avframe", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(frames):
            canvas = np.full((120, 160, 3), 60 + 4 * i, np.uint8)
            canvas[30:78, 50:98] = face
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.browser
def test_browser_webcam_tab_annotates_the_camera_frames(served, crop, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    camera = y4m(crop, tmp_path / "camera.y4m")
    driver = browser("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-video-capture={camera}")
    try:
        driver.get(served)
        open_tab(driver, "Webcam")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.XPATH, "//button[normalize-space()='Click to Access Webcam']")).click()
        wait.until(lambda d: d.find_element(By.XPATH, "//button[normalize-space()='Record']")).click()
        seen = set()

        def frames_arrived(d):  # at least two distinct annotated frames: the stream keeps going
            seen.update(e.get_attribute("src") for e in d.find_elements(By.CSS_SELECTOR, "#annotated-frame img"))
            return len(seen) >= 2

        wait.until(frames_arrived)
        shot = screenshot(driver, "serve-webcam-tab.png", tmp_path)
    finally:
        driver.quit()
    frame = np.asarray(Image.open(io.BytesIO(httpx.get(sorted(seen)[-1], timeout=30).content)))
    assert frame.shape[:2] == (120, 160)
    # detector none: the whole frame is the face, so its box runs along the border in its label's colour
    border = frame[0, 20:140].astype(int)
    assert (np.ptp(border, axis=1) > 40).all(), "no coloured face box on the annotated frame"
    assert shot.stat().st_size > 0


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
@pytest.mark.slow  # the web app served from a subprocess, as the browser tests: some 8 s to start
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
@pytest.mark.slow  # the served app's 8 s start, shared with the other `served` tests of the slow tier
def test_served_app_refuses_an_upload_above_its_size_limit(served):
    import httpx

    from ferlab.serving.app import MAX_UPLOAD_BYTES

    upload = f"{served}gradio_api/upload"
    answer = httpx.post(upload, files={"files": ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1))}, timeout=60)
    assert answer.status_code == 413, answer.text[:200]
    assert httpx.post(upload, files={"files": ("small.png", b"\0" * 1000)}, timeout=60).status_code == 200
