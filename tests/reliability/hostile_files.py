"""Builders of the worst hostile files (huge declared sizes, decompression bombs), shared by the
memory-bound suite. Each is small on disk and built in well under a second: a gzip "bomb" is many
gzip members of 64 MiB of zeros each (65 kB apiece), which gzip readers inflate one after the other."""

from __future__ import annotations

import gzip
import json
import struct
import tarfile

import numpy as np

MIB = 1 << 20
_ZEROS_MEMBER = None


def zeros_gzip(total: int) -> bytes:
    """Gzip members that inflate to ``total`` bytes of zeros (a multiple of 64 MiB)."""
    global _ZEROS_MEMBER
    if _ZEROS_MEMBER is None:
        _ZEROS_MEMBER = gzip.compress(bytes(64 * MIB), compresslevel=9, mtime=0)
    return _ZEROS_MEMBER * (total // (64 * MIB))


def idx_header(code: int, dims) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def idx_gz_bomb_valid_header() -> bytes:
    """An MNIST image header (60000 x 28 x 28, 47 MB announced) followed by 2 GiB of zeros."""
    return gzip.compress(idx_header(0x08, (60000, 28, 28)), mtime=0) + zeros_gzip(2048 * MIB)


def idx_gz_bomb_bad_header() -> bytes:
    """2 GiB of zeros: its "header" 00 00 00 00 is no IDX header, so nothing announces a size."""
    return zeros_gzip(2048 * MIB)


def idx_gz_bomb_huge_header() -> bytes:
    """A header announcing 10^9 images of 28 x 28 (784 GB), then 2 GiB of zeros."""
    return gzip.compress(idx_header(0x08, (10**9, 28, 28)), mtime=0) + zeros_gzip(2048 * MIB)


def idx_raw_huge_dims() -> bytes:
    """An uncompressed header announcing 4 x 10^9 x 28 x 28 values of float64, and 100 bytes of data."""
    return idx_header(0x0E, (4_000_000_000, 28, 28)) + bytes(100)


def cifar_tar_bomb() -> bytes:
    """A .tar.gz whose data_batch_1.bin member is 2 GiB of zeros (as gzip members)."""
    info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
    info.size = 2048 * MIB
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    return (gzip.compress(header, mtime=0) + zeros_gzip(2048 * MIB)
            + gzip.compress(bytes(1024), mtime=0))  # the end-of-archive blocks


def model_bytes() -> tuple[dict, dict]:
    """``(tensors, info)`` of a small valid model file: an MLP 4-3-2 on 1x2x2 inputs."""
    from cnnlab.engine.layers import Dense, Flatten, Softmax
    from cnnlab.engine.model import Sequential
    from cnnlab.io import FORMAT_VERSION

    model = Sequential([Flatten(), Dense(3), Dense(2), Softmax()], (1, 2, 2))
    tensors = {name: np.ascontiguousarray(a) for name, a in model.state_dict().items()}
    info = {"format_version": FORMAT_VERSION, "architecture": model.get_config(),
            "preprocessing": {"scale": 1 / 255}, "class_names": ["a", "b"], "extra": {}}
    return tensors, info


def model_file(architecture_edit) -> bytes:
    """The small model file with its metadata JSON text made by ``architecture_edit(info)``."""
    from safetensors.numpy import save

    tensors, info = model_bytes()
    return save(tensors, metadata={"cnnlab": architecture_edit(info)})


def dense_of(units: int):
    def edit(info):
        info["architecture"]["layers"][1]["config"]["units"] = units
        return json.dumps(info)
    return edit


def nested(depth: int):
    return lambda info: "[" * depth + "]" * depth
