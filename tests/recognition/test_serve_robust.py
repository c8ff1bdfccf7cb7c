"""The server under stress: big pictures decoded within a pixel budget, bounded work with a fast 503,
HEAD wherever GET works, /docs without the internet, and a client that hangs up mid-upload."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.recognition.preprocess import MAX_IMAGE_PIXELS, load_image
from cnnlab.recognition.serve import create_app
from cnnlab.recognition.serve import decode
from cnnlab.recognition.serve.decode import WORK_PIXELS, decode_picture, work_size
from test_serve_api import TemplateModel, draw_digits, png, upload


def scaled_digit(label: int, side: int, mode: str = "L") -> Image.Image:
    """A drawn digit enlarged to ``side`` x ``side`` (pen scaled too), in ``mode``."""
    image = draw_digits([label]).resize((side, side), Image.Resampling.BILINEAR)
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(TemplateModel())) as c:
        yield c


# -- decoding within the pixel budget ------------------------------------------------------------------
def test_work_size_keeps_aspect_and_budget():
    assert work_size((280, 280)) == (280, 280)
    for size in [(5000, 5000), (20_000, 1000), (1001, 1000)]:
        w, h = work_size(size)
        assert w * h <= WORK_PIXELS and w * h > 0.99 * WORK_PIXELS
        assert abs(w / h - size[0] / size[1]) < 0.01 * size[0] / size[1]


def test_small_pictures_decode_exactly_as_before():
    data = encoded(draw_digits([7]).convert("RGBA"))
    assert np.array_equal(np.asarray(decode_picture(data)), np.asarray(load_image(data)))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_big_pictures_shrink_to_the_budget_and_keep_the_digit(client, mode):
    picture = scaled_digit(7, 2400, "RGB" if mode == "P" else mode)
    if mode == "P":
        picture = picture.quantize(8)
    data = encoded(picture)
    decoded = decode_picture(data)
    assert decoded.mode == "L" and decoded.width * decoded.height <= WORK_PIXELS
    assert decoded.width == decoded.height
    # the same picture as load_image sees it, only smaller: compare at the small size
    reference = load_image(data).resize(decoded.size, Image.Resampling.BOX)
    assert np.abs(np.asarray(decoded, float) - np.asarray(reference, float)).mean() < 2.0
    assert upload(client, data).json()["prediction"] == 7


def test_transparent_big_picture_is_composited_on_white():
    ink = np.asarray(scaled_digit(1, 2200)) < 128
    rgba = np.zeros((*ink.shape, 4), np.uint8)  # transparent black "paper", opaque black ink
    rgba[ink, 3] = 255
    decoded = np.asarray(decode_picture(encoded(Image.fromarray(rgba, "RGBA"))))
    assert decoded.mean() > 200  # white paper, not black
    assert decoded.min() < 30  # and the ink is still there


def test_big_jpeg_is_decoded_small_and_turned_upright():
    picture = scaled_digit(7, 3000).crop((0, 0, 3000, 1800))  # wider than tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encoded(picture.convert("RGB"), "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode_picture(data)
    assert decoded.mode == "L" and decoded.width * decoded.height <= WORK_PIXELS
    assert decoded.height > decoded.width  # the orientation tag was applied
    assert load_image(data).height > load_image(data).width  # as load_image does


def test_corrupt_big_picture_is_an_image_error(client):
    data = encoded(scaled_digit(7, 2400))
    response = upload(client, data[: len(data) // 2])
    assert response.status_code == 415 and "decoded" in response.json()["detail"]


def test_large_decodes_never_overlap(monkeypatch):
    """Pictures over LARGE_PICTURE_PIXELS take the one large-decode slot: two never decode together."""
    active, most = 0, 0
    lock = threading.Lock()
    flatten = decode._flatten_to_gray

    def counting(image, *args):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.05)
        try:
            return flatten(image, *args)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(decode, "_flatten_to_gray", counting)
    data = encoded(scaled_digit(7, 2100))  # 4.4 megapixels
    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(lambda _: decode_picture(data).size, range(4)))
    assert most == 1 and len(set(sizes)) == 1


MEMORY_PROBE = textwrap.dedent(
    r"""
    import json, re, sys, threading
    import psutil
    sys.path.insert(0, sys.argv[2])
    from fastapi.testclient import TestClient
    from cnnlab.recognition.serve import create_app
    from test_serve_api import TemplateModel, draw_digits, png, upload

    data = open(sys.argv[1], "rb").read()
    with TestClient(create_app(TemplateModel(), max_upload_bytes=10_000_000)) as client:
        assert upload(client, png(draw_digits([7]))).status_code == 200  # warm: everything imported
        idle = psutil.Process().memory_info().rss
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(upload(client, data).json()["prediction"]))
                   for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        after = psutil.Process().memory_info().rss
    # VmHWM: this process's peak resident memory. (Not ru_maxrss: Linux keeps that across fork + exec,
    # so it starts at the size of the pytest process that started us.)
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
    print(json.dumps({"idle_mb": idle / 2**20, "peak_mb": peak / 2**20, "after_mb": after / 2**20, "answers": answers}))
    """
)


def test_eight_concurrent_maximum_size_uploads_stay_within_300_mb(tmp_path):
    """The largest picture allowed (5000x5000, RGBA: the worst case for PNG), 8 at once, in a fresh process
    so the peak resident memory is this test's alone."""
    if not Path("/proc/self/status").exists():
        pytest.skip("the peak memory of a process is read from Linux's /proc/self/status")
    side = int(MAX_IMAGE_PIXELS**0.5)
    path = tmp_path / "huge.png"
    path.write_bytes(encoded(scaled_digit(7, side, "RGBA")))
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["answers"] == [7] * 8
    assert figures["peak_mb"] - figures["idle_mb"] < 300, figures
    assert figures["after_mb"] - figures["idle_mb"] < 60, figures  # and it is given back afterwards


# -- bounded work, and a fast "busy" past the queue --------------------------------------------------
def test_full_queue_answers_503_with_retry_after_at_once():
    model = TemplateModel(delay=0.4)
    data = png(draw_digits([7]))
    with TestClient(create_app(model, workers=1, queue=1)) as c:

        def ask(_):
            t0 = time.perf_counter()
            response = upload(c, data)
            return response, time.perf_counter() - t0

        with ThreadPoolExecutor(5) as pool:
            results = list(pool.map(ask, range(5)))
        statuses = sorted(r.status_code for r, _ in results)
        assert statuses == [200, 200, 503, 503, 503]
        slowest_ok = max(t for r, t in results if r.status_code == 200)
        for response, seconds in results:
            if response.status_code == 503:
                assert response.headers["retry-after"] == "1"
                assert "busy" in response.json()["detail"]
                assert seconds < slowest_ok / 2  # told at once, not after waiting for the others
        assert upload(c, data).status_code == 200  # and it serves again once the queue drains


def test_no_more_pictures_in_work_than_workers():
    data = png(draw_digits([1]))
    app = create_app(TemplateModel(), workers=2, queue=64)
    recognizer = app.state.recognizer
    active, most = 0, 0
    lock = threading.Lock()
    recognize = recognizer.recognize

    def counting(*args, **kwargs):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.03)
        try:
            return recognize(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    recognizer.recognize = counting
    with TestClient(app) as c, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: upload(c, data).json()["prediction"], range(24)))
    assert answers == [1] * 24 and most == 2


# -- HEAD, and the offline API page ---------------------------------------------------------------------
def test_head_answers_wherever_get_does(client):
    paths = ["/", "/healthz", "/docs", "/openapi.json", "/static/app.js", "/static/style.css",
             "/static-offline-docs/swagger-ui.css"]
    for path in paths:
        got, head = client.get(path), client.head(path)
        assert got.status_code == 200 and head.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert int(head.headers["content-length"]) == len(got.content), path
    assert client.head("/api/predict").status_code == 405  # POST only: HEAD is no more allowed than GET
    assert client.head("/nowhere").status_code == 404


def test_docs_page_needs_nothing_from_the_internet(client):
    html = client.get("/docs").text
    assert "SwaggerUIBundle" in html
    assert "http://" not in html and "https://" not in html
    for asset in ("/static-offline-docs/swagger-ui-bundle.js", "/static-offline-docs/swagger-ui.css"):
        assert asset in html
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 10_000


# -- a client that hangs up --------------------------------------------------------------------------
def test_client_disconnect_mid_upload_is_one_log_line(caplog):
    app = create_app(TemplateModel())
    body = png(draw_digits([7]))
    messages = [{"type": "http.request", "body": body[:100], "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/predict", "raw_path": b"/api/predict", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"image/png"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))  # raises if the disconnect escapes the app
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and "127.0.0.1:50000" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)


def test_slow_uploads_do_not_take_the_queue():
    """Admission counts a request once its body is in: clients still uploading hold no worker or queue
    place, so a few slow (or stalled) uploads cannot turn everyone else away with 503."""
    import socket

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(TemplateModel(), workers=1, queue=0), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    data = png(draw_digits([7]))
    stalled = []
    try:
        for _ in range(3):  # three uploads that have sent half their body
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2])
            stalled.append(sock)
        time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/api/predict"
        response = httpx.post(url, content=data, headers={"content-type": "image/png"}, timeout=10)
        assert response.status_code == 200 and response.json()["prediction"] == 7
        stalled[0].sendall(data[len(data) // 2:])  # a stalled upload that finishes is answered too
        assert b"200 OK" in stalled[0].recv(100)
    finally:
        for sock in stalled:
            sock.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_command_passes_workers_and_queue_and_refuses_bad_values(monkeypatch):
    from click.testing import CliRunner

    import cnnlab.recognition.serve.app as serve_app
    import cnnlab.recognition.serve.cli as serve_cli

    calls = []
    monkeypatch.setattr(serve_cli, "_load", lambda path: TemplateModel())
    monkeypatch.setattr(serve_app, "run_server", lambda **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(serve_cli.serve, ["--workers", "3", "--queue", "0"])
    assert result.exit_code == 0, result.output
    assert calls[0]["workers"] == 3 and calls[0]["queue"] == 0
    result = CliRunner().invoke(serve_cli.serve, ["--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output and "Traceback" not in result.output


def test_a_callers_big_picture_is_read_not_changed():
    picture = scaled_digit(7, 2400, "RGBA")
    before = picture.copy()
    decoded = decode_picture(picture)
    assert decoded.width * decoded.height <= WORK_PIXELS
    assert picture.size == before.size and picture.tobytes() == before.tobytes()  # still usable, unchanged
