"""Download dataset files from public mirrors, verified before they are kept.

Each file is streamed (with a progress bar) into a temporary file next to its destination; only when the
transfer is complete *and* its checksum matches is it renamed into place. So the cache never holds a
half-downloaded or corrupt file: a failed attempt leaves nothing behind and the next mirror is tried.

Mirrors: each dataset lists public base URLs (primary first, then fallbacks). ``CNNLAB_MIRROR`` (or the
``mirror`` argument) replaces them with your own base URLs, comma-separated; a file is then fetched from
``<base>/<dataset>/<file>``, i.e. a mirror is any web server serving a data folder as laid out on disk
(``python -m http.server`` in a folder that holds ``mnist/``, for instance).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from ..engine.errors import DataError
from .registry import DatasetSpec

MIRROR_ENV = "CNNLAB_MIRROR"
CHUNK = 1 << 16
USER_AGENT = "cnnlab-data/0.1 (+urllib)"


def mirror_urls(spec: DatasetSpec, mirror: str | Sequence[str] | None = None) -> list[str]:
    """Base URLs to try for ``spec``: ``mirror`` or ``$CNNLAB_MIRROR`` (+ ``/<name>``), else the public ones."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror is None:
        return list(spec.mirrors)
    bases = mirror.split(",") if isinstance(mirror, str) else list(mirror)
    return [f"{b.strip().rstrip('/')}/{spec.folder}" for b in bases if b.strip()]


def _stream(url: str, out, timeout: float, progress: bool, label: str) -> int:
    """Copy the body of ``url`` into the open file ``out``; return the byte count. Raises on short bodies."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        from tqdm.auto import tqdm

        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return received


def fetch(
    urls: Sequence[str],
    dest: Path,
    check: Callable[[Path], None],
    *,
    progress: bool = True,
    timeout: float = 30.0,
    replaces: Path | None = None,
) -> Path:
    """Download the first good copy among ``urls`` to ``dest``.

    ``check(tmp_path)`` must raise :class:`DataError` when a downloaded file is not the expected one
    (checksum mismatch); that copy is then deleted and the next URL tried. ``replaces``: a file that
    failed verification; it is set aside (renamed ``NAME.corrupt-<time>``, never deleted) only once the
    verified copy is ready to take its place. Returns ``dest``. Raises :class:`DataError` listing every
    attempt when none succeeded (``replaces`` is then left untouched).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    unreachable = 0  # attempts that got no answer at all (no network, DNS, refused, timeout)
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _stream(url, out, timeout, progress, dest.name)
            check(tmp)
            if replaces is not None and replaces.exists():
                from .verify import set_aside

                set_aside(replaces)
            os.replace(tmp, dest)
            return dest
        except DataError as exc:
            failures.append(f"{url}: {exc}")
        except http.client.IncompleteRead as exc:
            failures.append(f"{url}: interrupted transfer ({exc.expected} bytes missing)")
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            failures.append(f"{url}: {exc.reason}")
            unreachable += 1
        except (OSError, socket.timeout, http.client.HTTPException) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            unreachable += isinstance(exc, (socket.timeout, ConnectionError))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    # One line (it is the first line of the error a user sees): what, why, and every attempt.
    offline = " no mirror could be reached (offline?):" if failures and unreachable == len(failures) else ""
    raise DataError(f"could not download {dest.name}:{offline} " + "; ".join(failures or ["no mirror to try"]))


def missing_files_message(spec: DatasetSpec, folder: Path, cause: str) -> str:
    """The message of a failed download: what to fetch by hand and where to put it."""
    names = "\n    ".join(spec.download_names())
    where = "\n    ".join(f"{base}/" for base in spec.mirrors)
    if spec.kind == "cifar":
        extra = f"\n  (or the extracted {', '.join(spec.files())} in {folder}/cifar-10-batches-bin/)"
    elif spec.kind == "idx-zip":
        extra = f"\n  (kept whole, not extracted; or the members {spec.member_prefix}{spec.files()[0]}.gz ... loose)"
    else:
        extra = "\n  (gzip-compressed or not; names without .gz work too)"
    return (
        f"dataset {spec.name!r} is not available and could not be downloaded: {cause}\n"
        f"Put these files in {folder}/:\n    {names}{extra}\n"
        f"They are published at:\n    {where}\n"
        "Or point --data-dir / CNNLAB_DATA at a folder holding them in a sub-folder named "
        f"{spec.folder!r}, or CNNLAB_MIRROR at a server that has them."
    )
