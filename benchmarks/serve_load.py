"""How fast cnnlab recognizes a picture: alone, and through the web server under load.

1. **Single picture**: preprocess (PNG bytes -> 28x28) + ``predict_proba`` on one digit, repeated;
   median and p99 latency (the issue's aim: under 5 ms).
2. **Server under load**: uvicorn serving :func:`cnnlab.serve.create_app` on 127.0.0.1 (a child process,
   so the load client does not share its interpreter), 16 concurrent httpx async clients posting a
   drawn digit to ``/api/predict`` for ``--seconds`` (default 20); requests/s, p50/p99 latency, errors.

    python benchmarks/serve_load.py [--model MODEL] [--seconds 20] [--clients 16] [--features]

Figures only, never asserts on time (this machine is shared and timings are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def drawn_digit_png() -> bytes:
    """A "7" like one drawn on the page: 280x280 canvas, marker 20 px wide."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 235)], fill=17, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load(model_path: str | None):
    from cnnlab.io import load_bundled_model, load_model

    return load_model(model_path) if model_path else load_bundled_model()


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


def single_picture(model, repeats: int = 300) -> dict:
    from cnnlab.preprocess import as_batch, prepare_digit

    data = drawn_digit_png()
    timings = {"preprocess": [], "predict": [], "total": []}
    for i in range(repeats + 20):
        t0 = time.perf_counter()
        digit = prepare_digit(data)
        t1 = time.perf_counter()
        model.predict_proba(as_batch([digit]))
        t2 = time.perf_counter()
        if i >= 20:  # warm-up excluded
            timings["preprocess"].append(t1 - t0)
            timings["predict"].append(t2 - t1)
            timings["total"].append(t2 - t0)
    return {name: {"median_ms": percentile_ms(v, 50), "p99_ms": percentile_ms(v, 99)} for name, v in timings.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_path: str | None, port: int) -> subprocess.Popen:
    code = (
        "import sys; from cnnlab.serve.app import run_server; "
        f"run_server({model_path!r}, host='127.0.0.1', port={port})"
    )
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start in 30 s")


async def load_test(url: str, seconds: float, clients: int, features: bool) -> dict:
    import httpx

    data = drawn_digit_png()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    query = "?features=true" if features else ""
    stop_at = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                response = await http.post(url + query, files={"file": ("d.png", data, "image/png")})
                ok = response.status_code == 200 and response.json()["prediction"] is not None
                key = None if ok else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                key = f"{type(exc).__name__}: {exc}"[:120]
            if key is None:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 50), 2) if latencies else None,
        "p99_ms": round(percentile_ms(latencies, 99), 2) if latencies else None,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the bundled LeNet-5)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the load test (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--features", action="store_true", help="ask for feature maps too (the page does)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    single = single_picture(load(args.model))
    port = free_port()
    server = start_server(args.model, port)
    try:
        under_load = asyncio.run(load_test(f"http://127.0.0.1:{port}/api/predict", args.seconds, args.clients, args.features))
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = {"single_picture": single, "server": under_load, "cpu_count": os.cpu_count()}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("single picture (PNG bytes -> prediction), 300 runs:")
    for name, figures in single.items():
        print(f"  {name:<11} median {figures['median_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms")
    s = under_load
    print(f"/api/predict, {s['clients']} concurrent clients, {s['seconds']} s{' (with feature maps)' if args.features else ''}:")
    print(f"  {s['requests_per_s']} requests/s   p50 {s['p50_ms']} ms   p99 {s['p99_ms']} ms   "
          f"requests {s['requests']}   errors {sum(s['errors'].values())} {s['errors'] or ''}")


if __name__ == "__main__":
    main()
