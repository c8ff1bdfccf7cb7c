"""IDX files inside a zip archive (EMNIST's ``gzip.zip``): one member read, nothing extracted.

EMNIST publishes all six of its subsets in one 562 MB archive whose members are gzip'd IDX files::

    gzip/emnist-digits-train-images-idx3-ubyte.gz     gzip/emnist-letters-train-images-idx3-ubyte.gz
    gzip/emnist-digits-train-labels-idx1-ubyte.gz     ...  (and byclass, bymerge, balanced, mnist)

The archive is kept as downloaded: a load reads the two members it needs through :mod:`zipfile`
(which checks each member's CRC) and inflates them with the same bounded gunzip as a loose ``.gz``.
Nothing is written to disk, so the cache holds one copy of EMNIST, and a crafted archive cannot write
anywhere.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from ..engine.errors import DataError
from .idx import MAX_PAYLOAD_BYTES, decode_payload


def read_member_payload(archive: Path, member: str) -> bytes:
    """The uncompressed IDX payload of ``member`` (a ``.gz`` or raw IDX file) inside zip ``archive``."""
    source = f"{archive}:{member}"
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise DataError(f"{archive}: the archive has no member {member!r}; expected EMNIST's gzip.zip "
                                "(members gzip/emnist-<subset>-<split>-...-ubyte.gz)") from None
            # The member's announced size bounds what zipfile will produce; refuse absurd ones up front.
            if info.file_size > MAX_PAYLOAD_BYTES:
                raise DataError(f"{source}: member announces {info.file_size:,} bytes, more than the "
                                f"{MAX_PAYLOAD_BYTES:,} any dataset file needs")
            raw = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{archive}: damaged zip archive ({exc}); move it away and download it again") from exc
    except OSError as exc:
        raise DataError(f"{archive}: cannot read the archive ({exc.strerror or exc})") from exc
    return decode_payload(raw, source)

