"""Measure the drawing page in headless Chromium with the bundled model, and take the docs' screenshots.

1. post-stroke latency (pen lifted -> answer on the page, measured inside the page) over N drawings of
   the ten digits, with the mouse on a 1280x800 desktop and with touch on a 390x844 phone;
2. the phone layouts (390x844, 320x568 portrait; 844x390, 568x320 landscape): are the canvas, Clear and
   the answer inside the viewport, with nothing to scroll?
3. screenshots (desktop, phone, phone dark, landscape) into docs/images/, reduced to 64 colours.

    python scripts/page_check.py [--drawings 50] [--no-screenshots]

Needs Playwright and Debian's Chromium (/usr/bin/chromium, or $CNNLAB_CHROMIUM). Figures only: this
machine is shared, so timings vary from run to run.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
CHROMIUM = os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
DIGITS = {  # pen strokes in a unit box, roughly as a person draws them
    0: [[(0.5, 0.12), (0.3, 0.3), (0.28, 0.65), (0.5, 0.88), (0.7, 0.65), (0.7, 0.3), (0.5, 0.12)]],
    1: [[(0.5, 0.12), (0.5, 0.88)]],
    2: [[(0.28, 0.3), (0.5, 0.12), (0.72, 0.3), (0.3, 0.85), (0.75, 0.85)]],
    3: [[(0.3, 0.18), (0.68, 0.22), (0.45, 0.48), (0.7, 0.68), (0.3, 0.85)]],
    4: [[(0.6, 0.88), (0.6, 0.12), (0.25, 0.62), (0.78, 0.62)]],
    5: [[(0.7, 0.14), (0.35, 0.14), (0.32, 0.45), (0.68, 0.55), (0.6, 0.85), (0.3, 0.82)]],
    6: [[(0.65, 0.12), (0.35, 0.5), (0.35, 0.8), (0.62, 0.85), (0.62, 0.58), (0.36, 0.6)]],
    7: [[(0.22, 0.2), (0.78, 0.2), (0.42, 0.85)]],
    8: [[(0.62, 0.2), (0.4, 0.15), (0.38, 0.35), (0.62, 0.6), (0.58, 0.85), (0.38, 0.82), (0.4, 0.6), (0.62, 0.38), (0.62, 0.2)]],
    9: [[(0.65, 0.35), (0.4, 0.2), (0.35, 0.42), (0.65, 0.38), (0.62, 0.88)]],
}
PHONES = {"390x844": (390, 844), "320x568": (320, 568), "844x390": (844, 390), "568x320": (568, 320)}


def serve() -> str:
    import uvicorn

    from cnnlab.recognition.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/"


def mouse_stroke(page, points):
    box = page.locator("#canvas").bounding_box()
    at = lambda fx, fy: (box["x"] + fx * box["width"], box["y"] + fy * box["height"])  # noqa: E731
    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*at(*p), steps=6)
    page.mouse.up()


def touch_stroke(page, cdp, points):
    box = page.locator("#canvas").bounding_box()
    at = lambda fx, fy: {"x": box["x"] + fx * box["width"], "y": box["y"] + fy * box["height"], "id": 0}  # noqa: E731
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at(*points[0])]})
    for a, b in zip(points, points[1:]):
        for t in np.linspace(0, 1, 7)[1:]:
            p = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [at(*p)]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def draw(page, digit, cdp=None):
    for points in DIGITS[digit]:
        touch_stroke(page, cdp, points) if cdp else mouse_stroke(page, points)


def latency(browser, url, drawings, touch: bool) -> dict:
    options = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True} if touch else \
        {"viewport": {"width": 1280, "height": 800}}
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(url)
    cdp = context.new_cdp_session(page) if touch else None
    right = 0
    for i in range(drawings):
        digit = i % 10
        draw(page, digit, cdp)
        page.wait_for_function(f"window.cnnlab.latencies.length >= {i + 1}", timeout=10_000)
        right += page.locator("#prediction").inner_text().strip() == str(digit)
        page.keyboard.press("Escape")
    values = page.evaluate("window.cnnlab.latencies")
    context.close()
    return {"drawings": drawings, "right": right, "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(max(values))}


def layouts(browser, url, screenshots: bool) -> dict:
    results = {}
    for name, (w, h) in PHONES.items():
        context = browser.new_context(viewport={"width": w, "height": h}, has_touch=True, is_mobile=True)
        page = context.new_page()
        page.goto(url)
        draw(page, 7)
        page.wait_for_function("document.querySelector('#prediction').textContent.trim() === '7'")
        time.sleep(0.3)
        inside = {}
        for selector in ("#canvas", "#clear", "#prediction", "#confidence", "#bar-7"):
            b = page.locator(selector).bounding_box()
            inside[selector] = b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["width"] <= w and b["y"] + b["height"] <= h
        results[name] = {"inside": inside, "canvas_px": round(page.locator("#canvas").bounding_box()["width"]),
                         "scroll_width": page.evaluate("document.documentElement.scrollWidth")}
        if screenshots and name in ("390x844", "844x390"):
            shot(page, f"page-{'phone' if h > w else 'landscape'}.png")
        context.close()
    return results


def shot(page, name: str) -> None:
    from PIL import Image

    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / name
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)  # small in the repository


def screenshots(browser, url) -> None:
    for name, options in {
        "page-desktop.png": {"viewport": {"width": 1280, "height": 800}},
        "page-phone-dark.png": {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True,
                                "color_scheme": "dark"},
    }.items():
        context = browser.new_context(**options)
        page = context.new_page()
        page.goto(url)
        draw(page, 3)
        page.wait_for_function("document.querySelector('#prediction').textContent.trim() !== 'draw a digit'")
        page.wait_for_selector("#features .maps img")
        time.sleep(0.4)
        shot(page, name)
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawings", type=int, default=50)
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    url = serve()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for touch in (False, True):
            r = latency(browser, url, args.drawings, touch)
            print(f"{'touch 390x844' if touch else 'mouse 1280x800'}: {r['drawings']} drawings, {r['right']} read right;"
                  f" post-stroke latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms")
        for name, r in layouts(browser, url, not args.no_screenshots).items():
            print(f"{name}: canvas {r['canvas_px']} px, page width {r['scroll_width']} px, in view: "
                  + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["inside"].items()))
        if not args.no_screenshots:
            screenshots(browser, url)
            print(f"screenshots in {IMAGES.relative_to(ROOT)}/")
        browser.close()


if __name__ == "__main__":
    main()
