"""Property tests (Hypothesis): random mutations of valid IDX, CIFAR-10 and model files — byte flips,
truncations, insertions, header edits, JSON edits — never raise anything but a CnnlabError subclass, and
never make the reader allocate more than a small bound (measured with tracemalloc, which sees NumPy's
buffers). Few examples, derandomized: the same cases on every run, a few seconds in all."""

from __future__ import annotations

import gzip
import json
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_files as hostile
from cnnlab.data.cifar import encode_cifar_batch, parse_cifar_batch, read_cifar_batch
from cnnlab.data.idx import encode_idx, parse_idx, read_idx
from cnnlab.engine.errors import CnnlabError

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Every input here is a few kilobytes: a reader that allocates more than this was told to by the file.
ALLOCATION_BOUND = 8 << 20
WORK = Path(tempfile.mkdtemp(prefix="cnnlab-mutations-"))


# -- mutations ---------------------------------------------------------------------------------------------
def flip(data: bytes, at: int, value: int) -> bytes:
    at %= max(len(data), 1)
    return data[:at] + bytes([value]) + data[at + 1:] if data else data


def truncate(data: bytes, at: int, _value: int) -> bytes:
    return data[:at % (len(data) + 1)]


def insert(data: bytes, at: int, value: int) -> bytes:
    at %= len(data) + 1
    return data[:at] + bytes([value]) * (1 + value % 7) + data[at:]


def header_word(data: bytes, at: int, value: int) -> bytes:
    """Overwrite one 4-byte word of the first 32 bytes (IDX dims, the safetensors header length...)."""
    at = (at % 8) * 4
    word = struct.pack(">I", [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 10**9, value, value << 16, 3073][value % 8] & 0xFFFFFFFF)
    return data[:at] + word + data[at + 4:] if len(data) >= at + 4 else data


MUTATIONS = [flip, truncate, insert, header_word]
mutation = st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 1 << 16), st.integers(0, 255))
mutations = st.lists(mutation, min_size=1, max_size=3)


def mutate(data: bytes, steps) -> bytes:
    for function, at, value in steps:
        data = function(data, at, value)
    return data


def bounded(call):
    """Run ``call``; only a CnnlabError may come out, and the peak allocation stays under the bound."""
    tracemalloc.start()
    try:
        result = call()
    except CnnlabError:
        result = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < ALLOCATION_BOUND, f"allocated {peak:,} bytes"
    return result


# -- IDX -----------------------------------------------------------------------------------------------------
rng = np.random.default_rng(0)
IDX_FILES = [encode_idx(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)),
             encode_idx(np.arange(7, dtype=np.uint8)),
             encode_idx(rng.random((2, 3), dtype=np.float32))]


@SETTINGS
@given(st.sampled_from(range(len(IDX_FILES))), mutations)
def test_mutated_idx_payloads_give_an_array_or_a_data_error(which, steps):
    payload = mutate(IDX_FILES[which], steps)
    array = bounded(lambda: parse_idx(payload, "x.idx"))
    if array is not None:  # accepted: then it is exactly what its header says
        assert array.nbytes == len(payload) - 4 - 4 * payload[3]


@SETTINGS
@given(st.sampled_from(range(len(IDX_FILES))), mutations, st.booleans())
def test_mutated_gzip_idx_files_give_an_array_or_a_data_error(which, steps, mutate_compressed):
    """Mutations of the gzip stream itself (damaged deflate data, CRC, sizes) or of what it holds."""
    payload = IDX_FILES[which]
    data = (mutate(gzip.compress(payload, mtime=0), steps) if mutate_compressed
            else gzip.compress(mutate(payload, steps), mtime=0))
    path = WORK / "m.idx.gz"
    path.write_bytes(data)
    bounded(lambda: read_idx(path))


# -- CIFAR-10 ------------------------------------------------------------------------------------------------
CIFAR = encode_cifar_batch(rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), np.array([0, 9, 4]))


@SETTINGS
@given(mutations)
def test_mutated_cifar_batches_give_records_or_a_data_error(steps):
    payload = mutate(CIFAR, steps)
    result = bounded(lambda: parse_cifar_batch(payload, "b.bin"))
    if result is not None:
        images, labels = result
        assert images.shape == (len(payload) // 3073, 3, 32, 32) and labels.max() < 10
    path = WORK / "b.bin"
    path.write_bytes(payload)
    bounded(lambda: read_cifar_batch(path))


# -- model files ---------------------------------------------------------------------------------------------
MODEL = hostile.model_file(json.dumps)


def load_and_use(path):
    from cnnlab.io import load_model

    model = load_model(path)
    p = model.predict_proba(np.zeros((1, *model.input_shape), np.float32))
    assert np.isfinite(p).all()  # a model that loads gives numbers (NaN weights are refused)
    return model


@SETTINGS
@given(mutations)
def test_mutated_model_files_load_or_give_a_model_file_error(steps):
    path = WORK / "m.safetensors"
    path.write_bytes(mutate(MODEL, steps))
    bounded(lambda: load_and_use(path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6)


def paths_in(value, prefix=()):
    """Every key path of a JSON value (so a test can replace any part of it)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths_in(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths_in(v, prefix + (i,))


_, INFO = hostile.model_bytes()
INFO_PATHS = [p for p in paths_in(INFO) if p]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(INFO_PATHS), json_values), min_size=1, max_size=3))
def test_model_metadata_with_any_part_replaced_loads_or_gives_a_model_file_error(edits):
    def edit(info):
        for path, value in edits:
            target = info
            try:
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
            except (KeyError, IndexError, TypeError):  # an earlier edit removed that part
                pass
        return json.dumps(info)

    path = WORK / "j.safetensors"
    path.write_bytes(hostile.model_file(edit))
    bounded(lambda: load_and_use(path))
