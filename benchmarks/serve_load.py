"""How fast cnnlab recognizes a picture: alone, and through the web server under load.

1. **Single picture**: preprocess (PNG bytes -> 28x28) + ``predict_proba`` on one digit, repeated;
   median and p99 latency (the issue's aim: under 5 ms).
2. **Server under load**: uvicorn serving :func:`cnnlab.recognition.serve.create_app` on 127.0.0.1 (a child process,
   so the load client does not share its interpreter), N concurrent httpx async clients (16, then 64)
   posting a drawn digit to ``/api/predict`` for ``--seconds`` each (default 10): answers/s, p50/p99
   latency of the answers, "busy" 503s (told at once to retry; their own p99), other errors, and the
   server's resident memory (RSS) idle and at its highest during the run (sampled every 50 ms).
3. **Big uploads**: ``--big-uploads`` (default 8) clients each send the largest picture allowed (5000x5000
   RGBA PNG) at the same moment; the server's RSS idle, at its peak, and half a second after.

    python benchmarks/serve_load.py [--model MODEL] [--seconds 10] [--clients 16 64] [--features] [--big-uploads 8]

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


def largest_picture_png() -> bytes:
    """The largest picture the server accepts (25 megapixels, 5000x5000), RGBA: the costliest to decode."""
    from cnnlab.recognition.preprocess import MAX_IMAGE_PIXELS

    side = int(MAX_IMAGE_PIXELS**0.5)
    image = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    ImageDraw.Draw(image).line([(side // 4, side // 5), (3 * side // 4, side // 5), (side // 2 - side // 8, 4 * side // 5)],
                               fill=(17, 17, 17, 255), width=side // 14, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load(model_path: str | None):
    from cnnlab.io import load_bundled_model, load_model

    return load_model(model_path) if model_path else load_bundled_model()


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


def single_picture(model, repeats: int = 300) -> dict:
    from cnnlab.recognition.preprocess import as_batch, prepare_digit

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
        "import sys; from cnnlab.recognition.serve.app import run_server; "
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


async def sample_rss(pid: int, stop: asyncio.Event, every_s: float = 0.05) -> int:
    """The highest resident memory of process ``pid`` until ``stop`` is set."""
    import psutil

    process, highest = psutil.Process(pid), 0
    while not stop.is_set():
        highest = max(highest, process.memory_info().rss)
        await asyncio.sleep(every_s)
    return highest


RETRY_AFTER_S = 1.0  # what the server's 503 says in Retry-After


def page_request(port: int, features: bool) -> bytes:
    """The request the drawing page sends, as bytes: JSON with the canvas as a PNG data URL."""
    import base64

    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(drawn_digit_png()).decode()}).encode()
    path = "/api/predict" + ("?features=true" if features else "")
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One request on a kept-alive connection -> (status, body). A bare HTTP/1.1 client: the load
    generator shares the machine with the server, and httpx spent more CPU than the server did."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def load_test(port: int, seconds: float, clients: int, features: bool, server_pid: int) -> dict:
    import psutil

    request = page_request(port, features)
    latencies: list[float] = []
    busy: list[float] = []  # 503 answers: how fast the server said "come back later"
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    status, body = await exchange(reader, writer, request)
                    ok = status == 200 and b'"prediction":7' in body.replace(b" ", b"")
                    key = None if ok else "busy" if status == 503 else f"HTTP {status}"
                except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
                    key = f"{type(exc).__name__}: {exc}"[:120]
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if key is None:
                    latencies.append(time.perf_counter() - t0)
                elif key == "busy":
                    busy.append(time.perf_counter() - t0)
                    await asyncio.sleep(RETRY_AFTER_S)  # as the page does: wait what Retry-After says
                else:
                    errors[key] = errors.get(key, 0) + 1
        finally:
            writer.close()

    server = psutil.Process(server_pid)
    idle_rss = server.memory_info().rss
    cpu_before = sum(server.cpu_times()[:2])  # user + system seconds, all threads
    client_cpu_before = time.process_time()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(server_pid, stop))
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    stop.set()
    peak_rss = await sampler
    server_cpu = (sum(server.cpu_times()[:2]) - cpu_before) / elapsed
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile_ms(latencies, 50), 2) if latencies else None,
        "p99_ms": round(percentile_ms(latencies, 99), 2) if latencies else None,
        "busy_503": len(busy),
        "busy_p99_ms": round(percentile_ms(busy, 99), 2) if busy else None,
        "errors": errors,
        "server_rss_idle_mb": round(idle_rss / 2**20, 1),
        "server_rss_peak_mb": round(peak_rss / 2**20, 1),
        "server_cpu_cores": round(server_cpu, 2),  # 1.0: one core busy all the time
        "client_cpu_cores": round((time.process_time() - client_cpu_before) / elapsed, 2),
    }


async def big_uploads(port: int, uploads: int, server_pid: int) -> dict:
    """``uploads`` clients each send the largest picture once, all at the same moment."""
    import psutil

    data = largest_picture_png()
    request = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/png\r\n"
               f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    server = psutil.Process(server_pid)
    idle_rss = server.memory_info().rss
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(server_pid, stop, every_s=0.02))

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            status, _ = await exchange(reader, writer, request)
            return status
        finally:
            writer.close()

    started = time.perf_counter()
    statuses = await asyncio.gather(*(one() for _ in range(uploads)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)  # memory after: is it given back?
    after_rss = server.memory_info().rss
    stop.set()
    peak_rss = await sampler
    return {"uploads": uploads, "bytes_each": len(data), "seconds": round(elapsed, 2), "statuses": statuses,
            "server_rss_idle_mb": round(idle_rss / 2**20, 1), "server_rss_peak_mb": round(peak_rss / 2**20, 1),
            "server_rss_after_mb": round(after_rss / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the bundled LeNet-5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load test (default 10)")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64],
                        help="concurrent clients, one load test each (default: 16 64)")
    parser.add_argument("--features", action="store_true", help="ask for feature maps too (the page does)")
    parser.add_argument("--big-uploads", type=int, default=8,
                        help="concurrent uploads of the largest picture allowed, for memory (default 8; 0: skip)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    single = single_picture(load(args.model))
    port = free_port()
    server = start_server(args.model, port)
    try:
        under_load = [asyncio.run(load_test(port, args.seconds, n, args.features, server.pid)) for n in args.clients]
        big = asyncio.run(big_uploads(port, args.big_uploads, server.pid)) if args.big_uploads else None
    finally:
        server.terminate()
        server.wait(timeout=10)
    results = {"single_picture": single, "server": under_load, "big_uploads": big, "cpu_count": os.cpu_count()}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("single picture (PNG bytes -> prediction), 300 runs:")
    for name, figures in single.items():
        print(f"  {name:<11} median {figures['median_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms")
    for s in under_load:
        print(f"/api/predict, {s['clients']} concurrent clients, {s['seconds']} s{' (with feature maps)' if args.features else ''}:")
        busy = f"busy (503) {s['busy_503']}" + (f", answered in p99 {s['busy_p99_ms']} ms" if s["busy_503"] else "")
        print(f"  {s['requests_per_s']} answers/s   p50 {s['p50_ms']} ms   p99 {s['p99_ms']} ms   "
              f"answers {s['requests']}   {busy}   errors {sum(s['errors'].values())} {s['errors'] or ''}")
        print(f"  server RSS: idle {s['server_rss_idle_mb']} MB, peak {s['server_rss_peak_mb']} MB;"
              f" CPU: server {s['server_cpu_cores']}, load client {s['client_cpu_cores']} cores"
              f" (this machine has {os.cpu_count()}, shared)")

    if big:
        print(f"{big['uploads']} concurrent uploads of the largest picture ({big['bytes_each']:,} bytes, 25 megapixels RGBA):"
              f" answered {big['statuses']} in {big['seconds']} s")
        print(f"  server RSS: idle {big['server_rss_idle_mb']} MB, peak {big['server_rss_peak_mb']} MB"
              f" (+{big['server_rss_peak_mb'] - big['server_rss_idle_mb']:.0f} MB), after {big['server_rss_after_mb']} MB")


if __name__ == "__main__":
    main()
