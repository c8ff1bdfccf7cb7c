"""Shared pytest fixtures.

Data fixtures (cnnlab.data):

* ``data_env`` — an isolated environment: no ``CNNLAB_DATA`` / ``CNNLAB_MIRROR``, the user cache (and its
  ``verified.json``) in a temporary folder, the in-process verification record cleared;
* ``fake_mnist`` — a tiny MNIST-like dataset written as IDX ``.gz`` files by the test itself, registered
  under the name ``"mnist"`` with its own digests for the duration of the test;
* ``real_data`` — the real datasets from ``CNNLAB_DATA``; a missing one skips the test, or FAILS it when
  ``CNNLAB_REQUIRE_DATA=1`` (as CI sets it), so CI can never pass without having looked at real data.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """Isolate the data layer from the machine: returns the temporary user-cache base folder."""
    from cnnlab.data import verify

    for var in ("CNNLAB_DATA", "CNNLAB_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    # No copies made by torchvision (./data/MNIST/raw) or Keras (~/.keras) on this machine leak in.
    monkeypatch.setenv("CNNLAB_TORCHVISION_ROOT", "")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-home"))
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    verify._memo.clear()
    yield cache
    verify._memo.clear()


def make_digits(n: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random uint8 28x28 'images' whose labels are recoverable from their pixels (for order checks).

    Pixel (0, 0) holds the sample's index mod 256 and pixel (0, 1) its label, so tests can see which
    sample ended up where after shuffling or splitting.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    rng.shuffle(labels)
    images[:, 0, 0] = np.arange(n) % 256
    images[:, 0, 1] = labels
    return images, labels


@dataclasses.dataclass
class FakeIdxDataset:
    """What ``fake_mnist`` built: where, the arrays, and the uncompressed payloads by file name."""

    data_dir: Path
    folder: Path
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    payloads: dict[str, bytes]

    def gz(self, fname: str) -> bytes:
        return gzip.compress(self.payloads[fname], mtime=0)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch, data_env) -> FakeIdxDataset:
    """A 60-train / 20-test MNIST look-alike in ``<tmp>/data/mnist/*.gz``, registered as ``"mnist"``."""
    from cnnlab.data import registry
    from cnnlab.data.idx import encode_idx

    data_dir = tmp_path / "data"
    folder = data_dir / "mnist"
    folder.mkdir(parents=True)
    arrays = {"train": make_digits(60, seed=1), "test": make_digits(20, seed=2)}
    payloads: dict[str, bytes] = {}
    for split, (images, labels) in arrays.items():
        images_name, labels_name = registry.MNIST.splits[split]
        payloads[images_name] = encode_idx(images)
        payloads[labels_name] = encode_idx(labels)
    for fname, payload in payloads.items():
        (folder / f"{fname}.gz").write_bytes(gzip.compress(payload, mtime=0))
    digests = {f: hashlib.sha256(p).hexdigest() for f, p in payloads.items()}
    spec = dataclasses.replace(registry.MNIST, sha256=digests, mirrors=("http://127.0.0.1:9/unused",))
    monkeypatch.setitem(registry.DATASETS, "mnist", spec)
    return FakeIdxDataset(data_dir, folder, arrays, payloads)


def real_data_dir() -> Path | None:
    """``$CNNLAB_DATA`` as a path (relative paths are taken from the project root), or None when unset."""
    value = os.environ.get("CNNLAB_DATA")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
    return path


@pytest.fixture
def real_data(request):
    """A function ``name -> data folder`` for real datasets; skips, or fails under CNNLAB_REQUIRE_DATA=1.

    The folder is passed explicitly to loaders; the rest of the environment is isolated (``data_env``).
    """
    from cnnlab.data import registry
    from cnnlab.data.paths import find_file

    required = os.environ.get("CNNLAB_REQUIRE_DATA", "") not in ("", "0")
    root = real_data_dir()  # read before data_env clears CNNLAB_DATA
    setting = os.environ.get("CNNLAB_DATA", "(unset)")
    request.getfixturevalue("data_env")

    def need(name: str) -> Path:
        spec = registry.get_spec(name)
        folder = root / spec.name if root else None
        if folder is None or not all(find_file(folder, f) for f in spec.files()):
            reason = (
                f"real dataset {name!r} not found in CNNLAB_DATA={setting} "
                f"(expected {', '.join(spec.files())} in <CNNLAB_DATA>/{spec.name}/)"
            )
            if required:
                pytest.fail(reason + "; CNNLAB_REQUIRE_DATA=1 makes this a failure")
            pytest.skip(reason)
        return root

    return need


class _MirrorHandler:
    """Builds a request handler class serving ``root``, with per-path misbehaviour for download tests."""

    @staticmethod
    def make(root: Path, interrupt: set, hits: list):
        from http.server import SimpleHTTPRequestHandler

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                hits.append(self.path)
                if self.path in interrupt:
                    # Announce the full size, send half, hang up: an interrupted transfer.
                    body = (root / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

        return Handler


@dataclasses.dataclass
class LocalMirror:
    """A web server on 127.0.0.1 serving ``root``; ``url`` is its base, ``interrupt`` paths are cut short."""

    root: Path
    url: str
    interrupt: set
    hits: list

    def put(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def http_mirror(tmp_path):
    """A local HTTP mirror (127.0.0.1 only) serving files from a temporary folder, stopped after the test."""
    import threading
    from http.server import ThreadingHTTPServer

    root = tmp_path / "mirror"
    root.mkdir()
    interrupt: set = set()
    hits: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MirrorHandler.make(root, interrupt, hits))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalMirror(root, f"http://127.0.0.1:{server.server_address[1]}", interrupt, hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: downloads fail at once, like a machine with no network."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
