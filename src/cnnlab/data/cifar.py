"""CIFAR-10, binary version: fixed-size records, a reader, a writer, and safe archive extraction.

Each ``.bin`` batch is a run of 3073-byte records::

    byte 0          label, 0..9
    bytes 1..1024   red plane, 32x32, row-major
    bytes 1025..    green plane, then blue plane

so a whole file is one ``reshape(N, 3073)``: column 0 is the labels and the rest reshapes straight to
``(N, 3, 32, 32)`` (already channel-first, no transpose). The archive ``cifar-10-binary.tar.gz`` holds
them in ``cifar-10-batches-bin/``: ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train, 5 x 10,000) and
``test_batch.bin`` (10,000).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from ..engine.errors import DataError

SIDE = 32
CHANNELS = 3
RECORD_BYTES = 1 + CHANNELS * SIDE * SIDE
ARCHIVE_FOLDER = "cifar-10-batches-bin"
#: The largest batch file accepted from an archive: 50,000 records, all of CIFAR-10's training set in one
#: (the real batches hold 10,000: 30.7 MB).
MAX_BATCH_BYTES = 50_000 * RECORD_BYTES


def parse_cifar_batch(payload: bytes, source="<bytes>", num_classes: int = 10):
    """Decode one batch -> ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``."""
    if len(payload) == 0 or len(payload) % RECORD_BYTES:
        raise DataError(
            f"{source}: size {len(payload)} bytes is not a positive multiple of the {RECORD_BYTES}-byte "
            f"CIFAR-10 record (1 label byte + 3x32x32 pixels); the file is truncated or not CIFAR-10 binary"
        )
    records = np.frombuffer(payload, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        bad = labels[labels >= num_classes]
        raise DataError(
            f"{source}: label {int(bad[0])} out of range; expected 0..{num_classes - 1} ({bad.size} labels out of range)"
        )
    images = records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE).copy()
    return images, labels


def read_cifar_batch(path: str | os.PathLike, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    return parse_cifar_batch(payload, path, num_classes)


def encode_cifar_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The bytes of a batch file for uint8 ``(N, 3, 32, 32)`` images and labels ``(N,)`` in 0..255."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.shape[1:] != (CHANNELS, SIDE, SIDE):
        raise DataError(f"CIFAR batch images must be uint8 (N, 3, 32, 32), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise DataError(f"CIFAR batch labels must have shape ({len(images)},), got {labels.shape}")
    records = np.empty((len(images), RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images.reshape(len(images), -1)
    return records.tobytes()


def write_cifar_batch(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    from ..atomic import write_bytes

    path = Path(path)
    write_bytes(path, encode_cifar_batch(images, labels))
    return path


def find_batch_folder(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The folder holding all ``names``: ``folder/cifar-10-batches-bin`` (as extracted) or ``folder`` itself."""
    for candidate in (folder / ARCHIVE_FOLDER, folder):
        if all((candidate / n).is_file() for n in names):
            return candidate
    return None


def extract_batches(archive: Path, dest: Path, names: tuple[str, ...]) -> Path:
    """Extract only the expected ``.bin`` members of ``archive`` into ``dest/cifar-10-batches-bin``.

    Members are looked up by exact name, never extracted by their own path, so a crafted archive cannot
    write outside ``dest``.
    """
    from ..atomic import write_bytes

    out = dest / ARCHIVE_FOLDER
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in names:
                try:
                    member = tar.getmember(f"{ARCHIVE_FOLDER}/{name}")
                except KeyError:
                    raise DataError(f"{archive}: archive has no member {ARCHIVE_FOLDER}/{name}") from None
                fh = tar.extractfile(member)
                if fh is None:
                    raise DataError(f"{archive}: member {member.name} is not a regular file")
                # The member's size is the archive's say-so: check it before reading that much.
                if not 0 < member.size <= MAX_BATCH_BYTES or member.size % RECORD_BYTES:
                    raise DataError(f"{archive}: member {member.name} claims {member.size:,} bytes; a CIFAR-10 batch "
                                    f"is a positive multiple of {RECORD_BYTES:,} bytes, at most {MAX_BATCH_BYTES:,}")
                write_bytes(out / name, fh.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: cannot extract the CIFAR-10 archive ({exc})") from exc
    return out
