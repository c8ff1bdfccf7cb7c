"""The drawing page in a real browser: Playwright driving Debian's Chromium against uvicorn on localhost.

Needs the ``playwright`` Python package and a Chromium binary (``apt-get install chromium``; Playwright's
own browser download is not used). ``CNNLAB_CHROMIUM`` overrides the path. Skipped when either is missing.
Screenshots go to pytest's temporary folder, or to ``$CNNLAB_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
CHROMIUM = os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CNNLAB_CHROMIUM)", allow_module_level=True)

import uvicorn  # noqa: E402

from cnnlab.serve import create_app  # noqa: E402
from test_serve_api import TemplateModel, draw_digits  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    """The app (with the template stand-in model) served by uvicorn on 127.0.0.1 in a background thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(TemplateModel()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(server_url + "/")
    yield page
    context.close()
    assert not errors, errors  # no JavaScript error at any point


def screenshot(page, tmp_path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("CNNLAB_SCREENSHOTS"):
        target = Path(os.environ["CNNLAB_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def stroke(page, points, box_offset=(0, 0)):
    """Draw one stroke with the mouse; ``points`` are fractions (0..1) of the canvas box."""
    box = page.locator("#canvas").bounding_box()
    ox, oy = box_offset

    def at(fx, fy):
        return box["x"] + (ox + fx) * box["height"], box["y"] + fy * box["height"]

    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for fx, fy in points[1:]:
        page.mouse.move(*at(fx, fy), steps=12)
    page.mouse.up()


def bar_widths(page) -> list[float]:
    return page.eval_on_selector_all("#bars .bar-fill", "els => els.map(e => e.getBoundingClientRect().width)")


def test_draw_see_prediction_and_bars_then_clear(page, tmp_path):
    assert page.locator("#prediction").inner_text() == "–"
    assert page.eval_on_selector("#canvas", "c => getComputedStyle(c).touchAction") == "none"
    stroke(page, [(0.22, 0.2), (0.78, 0.2), (0.42, 0.85)])  # a "7"
    page.wait_for_function("document.querySelector('#prediction').textContent.trim() === '7'", timeout=10_000)
    page.wait_for_selector("#bar-7.top")
    page.wait_for_function("document.querySelector('#bar-7 .bar-fill').getBoundingClientRect().width > 20")
    time.sleep(0.4)  # let the bars' CSS transition finish and any trailing prediction arrive
    widths = bar_widths(page)
    assert len(widths) == 10 and widths[7] == max(widths)
    assert page.locator("#processed").get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_selector("#features .maps img")
    assert page.locator("#features .maps").count() == 2  # one grid per convolutional layer
    screenshot(page, tmp_path, "page-drawn-7.png")

    page.click("#clear")
    assert page.locator("#prediction").inner_text() == "–"
    time.sleep(0.4)  # bars shrink with a short transition; a late answer for the old drawing must not return
    assert page.locator("#prediction").inner_text() == "–"
    assert max(bar_widths(page)) == 0
    blank = page.eval_on_selector(
        "#canvas",
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " for (let i = 0; i < d.length; i += 4) if (d[i] < 250) return false; return true; }",
    )
    assert blank


def test_upload_a_picture_file(page, tmp_path):
    path = tmp_path / "zero.png"
    draw_digits([0]).save(path)
    page.set_input_files("#upload", str(path))
    page.wait_for_function("document.querySelector('#prediction').textContent.trim() === '0'", timeout=10_000)
    page.wait_for_selector("#bar-0.top")


def test_number_mode(page, tmp_path):
    page.check("#number-mode")
    page.wait_for_selector("#number-result:not([hidden])")
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])  # "1"
    stroke(page, [(1.1, 0.2), (1.7, 0.2), (1.3, 0.85)])  # "7"
    page.wait_for_function("document.querySelector('#number').textContent.trim() === '17'", timeout=10_000)
    assert page.locator("#digits .digit-chip").count() == 2
    screenshot(page, tmp_path, "page-number-17.png")


def test_phone_layout(browser, server_url, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(server_url + "/")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    box = page.locator("#canvas").bounding_box()
    assert overflow <= 0 and box["width"] <= 390 and box["width"] > 250
    stroke(page, [(0.22, 0.2), (0.78, 0.2), (0.42, 0.85)])
    page.wait_for_function("document.querySelector('#prediction').textContent.trim() === '7'", timeout=10_000)
    screenshot(page, tmp_path, "page-phone.png")
    context.close()
