"""The REST API against hostile or careless clients (issue 20 items 7-11, issue 21 item 1), through real servers.

Limits are tight (fractions of a second, a few megapixels) so that every test takes seconds.
"""

import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import anyio
import pytest
from PIL import Image, ImageFile

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from ferlab.errors import FerlabError  # noqa: E402
from ferlab.inference import Recognizer  # noqa: E402
from ferlab.serving.admission import Admission  # noqa: E402
from ferlab.serving.api import Limits, create_app  # noqa: E402
from ferlab.serving.server import api_key_from_env  # noqa: E402
from tests.serving.ports import free_port  # noqa: E402
from tests.serving.servers import connect, read_until_closed, running  # noqa: E402

pytestmark = pytest.mark.hostile

TIMEOUT = 0.5  # seconds: the header and body timeouts of the servers below
LIMITS = dict(max_request_bytes=200_000, max_image_bytes=100_000, max_pixels=1_000_000, max_request_pixels=1_500_000,
              decode_pixels=2_000_000, max_batch=3, header_timeout=TIMEOUT, body_timeout=TIMEOUT, max_uploads=2)


def png(width: int, height: int, mode: str = "1") -> bytes:
    """A blank PNG: a 1-bit one compresses to a few kB at any size, so pixels cost no bytes here."""
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def recognizer(trained_run):
    return Recognizer(trained_run, "none", backend="onnx")


@pytest.fixture(scope="module")
def server(recognizer):
    with running(create_app({"cnn3": recognizer}, limits=Limits(**LIMITS))) as url:
        yield url


def stalled(url: str, declared: int = 100_000) -> socket.socket:
    """A request that declares `declared` body bytes and sends 10."""
    head = f"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Length: {declared}\r\n\r\n".encode()
    return connect(url, head + b"0123456789")


# Item 7


def test_an_empty_api_key_is_refused_at_start():
    env = {**os.environ, "FERLAB_API_KEY": ""}
    done = subprocess.run([sys.executable, "-m", "ferlab.cli", "api", "--model", "fast", "--port", str(free_port()),
                           "--detector", "none"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "FERLAB_API_KEY" in done.stderr and "empty" in done.stderr


def test_blank_keys_are_refused_and_an_unset_key_is_an_open_api():
    assert api_key_from_env({}) is None
    assert api_key_from_env({"FERLAB_API_KEY": "s3cret"}) == "s3cret"
    for blank in ("", "   ", "\t"):
        with pytest.raises(FerlabError, match="FERLAB_API_KEY"):
            api_key_from_env({"FERLAB_API_KEY": blank})


# Item 8


def test_a_stalled_body_is_answered_408_and_closed(server):
    start = time.monotonic()
    with stalled(server) as sock:
        answer = read_until_closed(sock)
    assert time.monotonic() - start < TIMEOUT + 2
    assert answer.startswith(b"HTTP/1.1 408") and b"application/json" in answer and b"within 0.5 s" in answer


def test_headers_that_never_end_are_cut_off(server):
    start = time.monotonic()
    with connect(server, b"POST /v1/predict HTTP/1.1\r\nHost: test\r\n") as sock:
        with pytest.raises((ConnectionError, OSError)):  # closed by the server, or reset while writing
            for _ in range(40):  # one header byte every 0.1 s: each byte would reset a keep-alive timer
                sock.sendall(b"X")
                time.sleep(0.1)
            pytest.fail("the connection was still open after 4 s")
    assert TIMEOUT - 0.1 < time.monotonic() - start < TIMEOUT + 2


def test_uploads_in_flight_are_capped_with_503_then_free_again(recognizer):
    png_body = png(48, 48, "RGB")
    with running(create_app(recognizer, limits=Limits(**{**LIMITS, "body_timeout": 2}))) as url:
        held = [stalled(url), stalled(url)]
        try:
            time.sleep(0.2)
            busy = httpx.post(f"{url}/v1/predict", content=png_body)
            assert busy.status_code == 503 and busy.headers["retry-after"].isdigit()
            assert busy.headers["content-type"] == "application/json" and "uploads" in busy.json()["detail"]
            assert httpx.get(f"{url}/health").status_code == 200  # no body: never counted
            for sock in held:
                assert read_until_closed(sock).startswith(b"HTTP/1.1 408")  # cut off by the body timeout
        finally:
            for sock in held:
                sock.close()
        assert httpx.post(f"{url}/v1/predict", content=png_body).status_code == 200


def test_a_client_leaving_mid_body_is_a_debug_line_not_an_internal_error(server, caplog):
    caplog.set_level(logging.DEBUG, logger="ferlab.serving")
    sock = stalled(server)
    time.sleep(0.1)
    sock.close()
    deadline = time.monotonic() + 3
    while not any("disconnected" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert left and left[0].levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# Item 9


@pytest.fixture
def decodes(monkeypatch):
    """Pillow's full decodes (ImageFile.load), slowed above 1 M pixels: calls and the most pixels decoded at once."""
    original, lock = ImageFile.ImageFile.load, threading.Lock()
    seen = {"calls": 0, "now": 0, "peak": 0}

    def load(image):
        # Only an image's first load decodes; later ones return what is loaded.
        pixels = 0 if getattr(image, "_seen_by_test", False) else image.size[0] * image.size[1]
        image._seen_by_test = True
        with lock:
            seen["calls"] += 1
            seen["now"] += pixels
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            if pixels > 1_000_000:
                time.sleep(0.3)
            return original(image)
        finally:
            with lock:
                seen["now"] -= pixels

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return seen


def test_request_pixels_are_refused_from_the_headers_before_anything_is_decoded(server, decodes):
    files = [("files", (f"{i}.png", png(800, 700))) for i in range(3)]  # 560,000 each, 1,680,000 in all
    answer = httpx.post(f"{server}/v1/predict/batch", files=files)
    assert answer.status_code == 413, answer.text
    assert "1,680,000" in answer.json()["detail"] and "1,500,000" in answer.json()["detail"]
    assert decodes["calls"] == 0


def test_heavy_requests_share_a_pixel_budget_and_small_ones_do_not_wait_behind_them(recognizer, decodes):
    """4 requests of 15 M pixels (0.3 s of decoding each) against a 20 M budget on 2 workers, then a small one.

    Without the budget two heavy ones decode at once (30 M pixels) and the small one waits its turn behind
    all four (0.6 s); with it, one heavy request decodes at a time and the small one takes the free worker.
    """
    limits = Limits(**{**LIMITS, "max_pixels": 15_000_000, "max_request_pixels": 15_000_000,
                       "decode_pixels": 20_000_000, "workers": 2, "max_uploads": 8, "body_timeout": 10})
    heavy, small = png(5000, 3000), png(48, 48, "RGB")
    results = {}
    with running(create_app({"cnn3": recognizer}, limits=limits)) as url:
        async def send(name: str, body: bytes, delay: float, client: httpx.AsyncClient) -> None:
            await anyio.sleep(delay)
            start = time.perf_counter()
            answer = await client.post("/v1/predict", content=body)
            results[name] = (answer.status_code, time.perf_counter() - start)

        async def load() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client, anyio.create_task_group() as group:
                for i in range(4):
                    group.start_soon(send, f"heavy{i}", heavy, 0, client)
                group.start_soon(send, "small", small, 0.1, client)

        anyio.run(load)
    assert [code for code, _ in results.values()] == [200] * 5
    assert decodes["peak"] <= 20_000_000
    assert results["small"][1] < 0.4, f"the small request took {results['small'][1]:.2f} s"


def test_admission_orders_by_expected_work_and_does_not_starve_a_large_request():
    """The scheduler alone, with fake work: no request waits forever however many small ones keep coming."""
    order, peak = [], {"used": 0}

    async def main() -> None:
        admission = Admission(slots=2, pixels=100, pixels_per_second=100)

        async def job(name: str, pixels: int, delay: float, seconds: float) -> None:
            await anyio.sleep(delay)
            async with admission.enter(pixels):
                peak["used"] = max(peak["used"], admission.used)
                order.append(name)
                await anyio.sleep(seconds)

        async with anyio.create_task_group() as group:
            group.start_soon(job, "big", 100, 0.05, 0.05)  # needs the whole budget: both slots idle
            for i in range(40):  # a stream of small jobs keeps a slot busy for 2 s
                group.start_soon(job, f"small{i}", 1, i * 0.05, 0.1)

    anyio.run(main)
    assert peak["used"] <= 100
    assert order.index("big") < 25  # admitted about 1 s (100 pixels at 100 a second) after it arrived

    async def too_big() -> None:
        async with Admission(slots=1, pixels=10).enter(11):
            pass

    with pytest.raises(FerlabError, match="budget"):
        anyio.run(too_big)


# Item 11 and issue 21 item 1


def test_too_many_batch_files_are_413_as_documented(server):
    image = png(48, 48, "RGB")
    answer = httpx.post(f"{server}/v1/predict/batch", files=[("files", (f"{i}.png", image)) for i in range(4)])
    assert answer.status_code == 413 and "3" in answer.json()["detail"], answer.text


def test_head_health_answers_like_get(server):
    head, get = httpx.head(f"{server}/health"), httpx.get(f"{server}/health")
    assert head.status_code == get.status_code == 200 and head.content == b""


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "application/octet-stream", None,
                                          "text/plain"])
def test_an_image_body_is_recognised_by_its_bytes_whatever_its_declared_type(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = httpx.post(f"{server}/v1/predict", content=png(48, 48, "RGB"), headers=headers)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["width"], answer.json()["height"]) == (48, 48)
