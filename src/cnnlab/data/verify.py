"""Checksums of dataset files, and a small record of files already verified.

Hashing MNIST's 55 MB of payload costs tens of milliseconds, but a record keeps repeated loads from
paying it at all: once a file's payload matched its digest we remember ``(path, size, mtime)`` — in memory
for this process, and in ``<user cache>/verified.json`` for the next ones. Any change to the file (a new
size or modification time) invalidates the record, so a replaced or damaged file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

from ..engine.errors import DataError
from .paths import user_cache_dir

STAMP_NAME = "verified.json"

_memo: dict[str, tuple] = {}  # resolved path -> (size, mtime, ctime, inode, digest)


class ChecksumError(DataError):
    """A file's payload does not match the SHA-256 digest known for it."""

    def __init__(self, path: Path, expected: str, actual: str, diagnosis: str | None = None):
        self.path, self.expected, self.actual, self.diagnosis = Path(path), expected, actual, diagnosis
        found = f"{diagnosis}; " if diagnosis else ""
        super().__init__(
            f"{path}: {found}checksum mismatch: SHA-256 of the payload is {actual}, expected {expected}; "
            "the file is corrupt or not the expected one: move it away and download it again"
        )


class CorruptFileWarning(UserWarning):
    """A cached dataset file did not match its digest and is being replaced."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file read in blocks: EMNIST's 562 MB archive is never held in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _key(path: Path) -> tuple[str, list[int]]:
    """``(resolved path, [size, mtime, ctime, inode])``: what must be unchanged for a digest to stand.

    Size and mtime alone are not enough: an edit that keeps the size and restores the mtime
    (``touch -r``, ``os.utime``) would keep a stale "verified". The ctime cannot be set by a user — any
    write, rename or utime moves it to now — and the inode changes when the file is replaced.
    """
    stat = path.stat()
    return str(path.resolve()), [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def _stamp_file() -> Path:
    return user_cache_dir() / STAMP_NAME


def _read_stamps() -> dict:
    try:
        return json.loads(_stamp_file().read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def is_recorded(path: Path, digest: str) -> bool:
    """True when ``path``, unchanged since, was already verified against ``digest``."""
    name, facts = _key(path)
    if _memo.get(name) == (*facts, digest):
        return True
    entry = _read_stamps().get(name)
    if entry == [*facts, digest]:
        _memo[name] = (*facts, digest)
        return True
    return False


def record(path: Path, digest: str) -> None:
    """Remember that ``path`` (as it is now) matched ``digest``. A read-only cache only loses the speed-up."""
    from ..atomic import write_text

    name, facts = _key(path)
    _memo[name] = (*facts, digest)
    stamps = _read_stamps()
    if stamps.get(name) == [*facts, digest]:
        return
    stamps[name] = [*facts, digest]
    try:
        write_text(_stamp_file(), json.dumps(stamps, indent=0, sort_keys=True))
    except OSError:
        pass


def forget(path: Path) -> None:
    """Drop the in-process record of ``path`` (the file record goes stale by itself when the file changes)."""
    _memo.pop(str(Path(path).resolve()), None)


def read_sums(path: Path) -> dict[str, str]:
    """Parse a ``SHA256SUMS`` file (``<hex>  <name>`` lines) into name -> digest; missing file -> {}."""
    sums: dict[str, str] = {}
    try:
        text = path.read_text("utf-8")
    except OSError:
        return sums
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def warn_corrupt(path: Path, reason: str) -> None:
    """Report a file that failed verification and is about to be replaced by a fresh download.

    The file itself is never deleted: once a verified copy has arrived it is renamed by
    :func:`set_aside` (and stays where it is when no copy arrives).
    """
    warnings.warn(f"{path}: corrupt ({reason}); fetching a verified copy (yours is kept as "
                  f"{path.name}.corrupt-<time> once it has arrived)", CorruptFileWarning, stacklevel=3)


def set_aside(path: Path) -> Path:
    """Rename a file that failed verification to ``NAME.corrupt-<YYYYmmdd-HHMMSS>`` beside it; return the new path.

    Called only once a verified replacement is ready to take its place, so the user never ends up with
    nothing (and can still inspect what was wrong with theirs).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    forget(path)
    os.replace(path, aside)
    return aside


def verify_payload(path: Path, payload: bytes, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``payload`` (the bytes of ``path``, uncompressed) has ``expected``
    as SHA-256. Skips the hashing when an unchanged ``path`` was verified before."""
    _verify(path, expected, lambda: sha256_hex(payload))


def verify_file(path: Path, expected: str) -> None:
    """Like :func:`verify_payload` for the file's own bytes, hashed in blocks (large archives)."""
    _verify(path, expected, lambda: sha256_file(path))


def _verify(path: Path, expected: str, digest) -> None:
    """The check both share: the record first (no hashing for a file verified unchanged), else ``digest()``."""
    if is_recorded(path, expected):
        return
    actual = digest()
    if actual != expected:
        forget(path)
        raise ChecksumError(path, expected, actual)
    record(path, expected)
