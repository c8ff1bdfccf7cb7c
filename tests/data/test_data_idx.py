"""IDX reader/writer: round trips, and every kind of damaged file raises DataError naming file and problem."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from cnnlab.data.idx import check_pair, encode_idx, parse_idx, read_idx, write_idx
from cnnlab.engine.errors import DataError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_header_layout_matches_the_mnist_spec():
    data = encode_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])  # magic 0x00000803
    assert struct.unpack(">3I", data[4:16]) == (2, 28, 28)
    assert len(data) == 16 + 2 * 28 * 28
    assert encode_idx(np.zeros(7, dtype=np.uint8))[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 7])


def test_gzip_is_detected_by_content_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    raw_named_gz = tmp_path / "labels.gz"
    raw_named_gz.write_bytes(encode_idx(labels))
    gz_named_raw = tmp_path / "labels"
    gz_named_raw.write_bytes(gzip.compress(encode_idx(labels)))
    np.testing.assert_array_equal(read_idx(raw_named_gz), labels)
    np.testing.assert_array_equal(read_idx(gz_named_raw), labels)


GOOD = encode_idx(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"\x08\x03", "shorter than the 4-byte magic"),
        (b"\x01\x00" + GOOD[2:], "should start with 0x0000"),
        (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX dtype code 0x07"),
        (GOOD[:3] + b"\x00" + GOOD[4:], "rank is 0"),
        (GOOD[:10], "truncated header"),
        (GOOD[:-1], "truncated payload"),
        (GOOD + b"\x00\x00", "2 trailing bytes"),
        (GOOD[:4] + struct.pack(">3I", 2, 3, 5) + GOOD[16:], "truncated payload"),  # dims disagree with size
        (GOOD[:4] + struct.pack(">3I", 1, 3, 4) + GOOD[16:], "trailing bytes"),
    ],
)
def test_corrupt_payloads_raise_dataerror_naming_file_and_problem(tmp_path, payload, problem):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(payload)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_corrupt_payload_inside_gzip_is_caught_too(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(GOOD[:-3]))
    with pytest.raises(DataError, match="truncated payload"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(GOOD * 50)[:-20])
    with pytest.raises(DataError, match=r"cut\.gz: damaged gzip data"):
        read_idx(path)


def test_gzip_bomb_is_stopped_at_the_size_the_header_announces(tmp_path):
    """A small .gz whose IDX header announces 10 labels but inflates to 256 MB of zeros: refused while
    inflating (at most one block past the announced size), not after inflating it all."""
    import zlib

    header = bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big")
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 24)
    bomb = packer.compress(header) + b"".join(packer.compress(zeros) for _ in range(16)) + packer.flush()
    assert len(bomb) < 1 << 20  # under a megabyte on disk
    path = tmp_path / "bomb.gz"
    path.write_bytes(bomb)
    with pytest.raises(DataError, match=r"bomb\.gz: inflates to more than 1,048,594 bytes \(18 announced"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


def test_parse_reports_dims_and_sizes():
    with pytest.raises(DataError, match=r"dims \(2, 3, 4\) need 24 bytes of data, file has 23"):
        parse_idx(GOOD[:-1], "f")


def test_big_endian_values_decoded():
    payload = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + struct.pack(">2h", -2, 513)
    np.testing.assert_array_equal(parse_idx(payload), [-2, 513])


def test_writer_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


def test_check_pair_counts_mismatch_names_both_files():
    images = np.zeros((5, 28, 28), np.uint8)
    with pytest.raises(DataError, match=r"img has 5 images, lbl has 4 labels"):
        check_pair(images, np.zeros(4, np.uint8), 10, "img", "lbl")


def test_check_pair_label_out_of_range():
    images = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(DataError, match=r"lbl: label 12 out of range; expected 0\.\.9 \(1 labels"):
        check_pair(images, np.array([0, 12, 9], np.uint8), 10, "img", "lbl")


def test_check_pair_rejects_wrong_ranks():
    with pytest.raises(DataError, match="rank 3"):
        check_pair(np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), 10, "img", "lbl")
    with pytest.raises(DataError, match="rank 1"):
        check_pair(np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), 10, "img", "lbl")
    check_pair(np.zeros((3, 28, 28), np.uint8), np.array([0, 9, 5], np.uint8), 10, "img", "lbl")  # fine
