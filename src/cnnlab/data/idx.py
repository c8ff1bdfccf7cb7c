"""The IDX file format (MNIST, Fashion-MNIST): a strict reader and a writer.

An IDX file is a big-endian header followed by a raw array::

    bytes 0-1   0x00 0x00                  (always zero)
    byte  2     dtype code                  0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                            0x0D float32, 0x0E float64
    byte  3     rank r                      (1 for labels, 3 for images)
    4*r bytes   the r dimensions, uint32    (e.g. 60000, 28, 28)
    payload     prod(dims) items, row-major, big-endian

MNIST images are ``0x00000803`` (uint8, rank 3) and labels ``0x00000801`` (uint8, rank 1). The files are
usually gzip-compressed; we recognise gzip by its magic bytes (``1f 8b``), not by the file name.

The reader is strict on purpose: a wrong magic, an unknown dtype code, a payload shorter or longer than
the dims announce — each raises :class:`~cnnlab.engine.errors.DataError` naming the file and the problem, so a
damaged download can never become a silently wrong array.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..engine.errors import DataError

#: IDX dtype code -> NumPy dtype (big-endian, as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str: code for code, dt in IDX_DTYPES.items()}

GZIP_MAGIC = b"\x1f\x8b"


def read_raw(path: str | os.PathLike) -> bytes:
    """The file's bytes as stored (compressed or not); a :class:`DataError` when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def decode_payload(raw: bytes, source: str | os.PathLike = "<bytes>") -> bytes:
    """``raw`` gunzipped when it is gzip (detected from its first two bytes), else ``raw`` itself.

    ``source`` names the file (or archive member) in error messages.
    """
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return _gunzip_bounded(raw, source)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{source}: damaged gzip data ({exc}); delete the file and download it again") from exc


def read_payload(path: str | os.PathLike) -> bytes:
    """The file's bytes, gunzipped when the file is gzip (detected from its first two bytes)."""
    return decode_payload(read_raw(path), Path(path))


#: The most an IDX payload may inflate to when its own header cannot bound it (EMNIST's largest is 640 MB).
MAX_PAYLOAD_BYTES = 1 << 30

_BLOCK = 1 << 20


def _announced_size(head: bytes) -> int | None:
    """Header + data bytes that an IDX header announces, once ``head`` holds the whole header; else None."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES or head[3] == 0:
        return None
    header_size = 4 + 4 * head[3]
    if len(head) < header_size:
        return None
    dims = struct.unpack(f">{head[3]}I", head[4:header_size])
    return header_size + int(np.prod(dims, dtype=np.float64)) * IDX_DTYPES[head[2]].itemsize


def _gunzip_bounded(raw: bytes, path) -> bytes:
    """Inflate gzip ``raw`` block by block, refusing to produce more than the IDX header announces.

    A 3 MB "zip bomb" that inflates to gigabytes is stopped after at most one block past the announced
    size (or :data:`MAX_PAYLOAD_BYTES` when no header can be read), instead of after the whole inflation.
    Multi-member gzip files (concatenated streams) are read member by member, as ``gzip.decompress`` does.
    """
    parts: list[bytes] = []
    size, limit, announced = 0, MAX_PAYLOAD_BYTES, None
    head = b""  # the first bytes, until the IDX header in them is complete
    data = raw
    while data:
        inflater = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer around the deflate stream
        while not inflater.eof:
            chunk = inflater.decompress(data, _BLOCK)  # at most one block of output per call
            data = inflater.unconsumed_tail
            parts.append(chunk)
            size += len(chunk)
            if announced is None and len(head) < 4 + 4 * 255:
                head = (head + chunk)[:4 + 4 * 255]
                if len(head) >= 4 and (head[:2] != b"\0\0" or head[2] not in IDX_DTYPES or head[3] == 0):
                    # no IDX header: nothing to inflate further for (parse_idx names what is wrong)
                    parse_idx(head, path)
                announced = _announced_size(head)
                if announced is not None and announced > MAX_PAYLOAD_BYTES:
                    dims = struct.unpack(f">{head[3]}I", head[4:4 + 4 * head[3]])
                    raise DataError(f"{path}: its IDX header announces dims {dims}, {announced:,} bytes, more than "
                                    f"the {MAX_PAYLOAD_BYTES:,} a dataset file may hold; the file is not a "
                                    f"dataset file (or is damaged)")
                if announced is not None:  # one block of slack: parse_idx then names small trailing data
                    limit = announced + _BLOCK
            if size > limit:
                raise DataError(f"{path}: inflates to more than {limit:,} bytes"
                                + (f" ({announced:,} announced by its IDX header)" if announced is not None else "")
                                + "; the file is not a dataset file (or is damaged)")
            if not chunk and not data:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = inflater.unused_data
        if data and data[:2] != GZIP_MAGIC:  # after the last member gzip allows zero padding, nothing else
            if data.strip(b"\0"):
                raise OSError("not a gzipped file (trailing data after the compressed stream)")
            break
    return b"".join(parts)


def parse_idx(payload: bytes, source: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX payload into a native-endian array of shape ``dims``.

    ``source`` only names the file in error messages.
    """
    if len(payload) < 4:
        raise DataError(f"{source}: not an IDX file: {len(payload)} bytes, shorter than the 4-byte magic number")
    zero, code, rank = struct.unpack(">HBB", payload[:4])
    if zero != 0:
        raise DataError(
            f"{source}: not an IDX file: magic number 0x{payload[:4].hex()} should start with 0x0000"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02X} (expected one of {known})")
    if rank == 0:
        raise DataError(f"{source}: IDX rank is 0; expected at least 1 dimension")
    header_size = 4 + 4 * rank
    if len(payload) < header_size:
        raise DataError(
            f"{source}: truncated header: rank {rank} needs {header_size} bytes, file has {len(payload)}"
        )
    dims = struct.unpack(f">{rank}I", payload[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(payload) - header_size
    if actual < expected:
        raise DataError(
            f"{source}: truncated payload: dims {dims} need {expected} bytes of data, file has {actual}"
        )
    if actual > expected:
        raise DataError(
            f"{source}: {actual - expected} trailing bytes after the data announced by dims {dims} "
            f"({expected} bytes expected)"
        )
    array = np.frombuffer(payload, dtype=dtype, offset=header_size).reshape(dims)
    # astype gives a writable, native-endian copy (for uint8 this is one memcpy).
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array; see :func:`parse_idx` for the checks."""
    return parse_idx(read_payload(path), path)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of an array whose dtype IDX can store."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str
    if key not in _CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}; expected uint8, int8, int16, int32, float32 or float64")
    if array.ndim == 0 or array.ndim > 255:
        raise DataError(f"IDX stores arrays of rank 1 to 255, got rank {array.ndim}")
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``compress`` (default: name ends in ``.gz``).

    The file is written atomically (temporary file + rename).
    """
    from ..atomic import write_bytes

    path = Path(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes(path, data)
    return path


def check_pair(images: np.ndarray, labels: np.ndarray, num_classes: int, images_src, labels_src,
               first_label: int = 0) -> None:
    """Check that an image file and a label file belong together.

    ``images`` must be ``(N, H, W)`` uint8 and ``labels`` ``(N,)`` with values in
    ``[first_label, first_label + num_classes)`` (EMNIST letters count from 1).
    """
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_src}: expected uint8 images of rank 3 (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_src}: expected labels of rank 1 (N,), got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"image and label counts differ: {images_src} has {len(images)} images, "
            f"{labels_src} has {len(labels)} labels"
        )
    last = first_label + num_classes - 1
    if labels.size and (labels.min() < first_label or labels.max() > last):
        bad = labels[(labels < first_label) | (labels > last)]
        raise DataError(
            f"{labels_src}: label {int(bad[0])} out of range; expected {first_label}..{last} "
            f"({bad.size} labels out of range)"
        )
