"""CIFAR-10 binary batches: round trip, corrupt files, loading by name, archive download and extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest

from cnnlab.data import download_dataset, load_dataset, registry
from cnnlab.data.cifar import (
    ARCHIVE_FOLDER,
    RECORD_BYTES,
    encode_cifar_batch,
    extract_batches,
    parse_cifar_batch,
    read_cifar_batch,
    write_cifar_batch,
)
from cnnlab.data.verify import ChecksumError
from cnnlab.engine.errors import DataError

SPEC = registry.CIFAR10


def make_batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def test_record_layout_label_then_red_green_blue_planes():
    images, labels = make_batch(2, 0)
    data = encode_cifar_batch(images, labels)
    assert len(data) == 2 * RECORD_BYTES == 2 * 3073
    assert data[0] == labels[0] and data[RECORD_BYTES] == labels[1]
    assert data[1:1025] == images[0, 0].tobytes()  # red plane, row-major
    assert data[2049:3073] == images[0, 2].tobytes()  # blue plane


def test_round_trip(tmp_path):
    images, labels = make_batch(7, 1)
    got_images, got_labels = read_cifar_batch(write_cifar_batch(tmp_path / "b.bin", images, labels))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.shape == (7, 3, 32, 32) and got_labels.dtype == np.int64


@pytest.mark.parametrize("cut", [1, RECORD_BYTES - 1, RECORD_BYTES + 5])
def test_truncated_or_padded_file(tmp_path, cut):
    data = encode_cifar_batch(*make_batch(2, 2))
    path = tmp_path / "bad.bin"
    path.write_bytes(data[:-cut] if cut < RECORD_BYTES else data + b"\0" * 5)
    with pytest.raises(DataError, match=r"bad\.bin: size \d+ bytes is not a positive multiple of the 3073"):
        read_cifar_batch(path)


def test_empty_file_and_label_out_of_range(tmp_path):
    with pytest.raises(DataError, match="not a positive multiple"):
        parse_cifar_batch(b"", "empty.bin")
    images, labels = make_batch(3, 3)
    labels[1] = 11
    with pytest.raises(DataError, match=r"x\.bin: label 11 out of range; expected 0\.\.9"):
        parse_cifar_batch(encode_cifar_batch(images, labels), "x.bin")


def write_fake_cifar(folder, n=4):
    """Six small batch files as in the archive; returns (train arrays, test arrays)."""
    parts = {f: make_batch(n, i) for i, f in enumerate(SPEC.files())}
    for fname, (images, labels) in parts.items():
        write_cifar_batch(folder / fname, images, labels)
    train = [parts[f] for f in SPEC.files("train")]
    return (np.concatenate([p[0] for p in train]), np.concatenate([p[1] for p in train])), parts["test_batch.bin"]


def test_load_by_name_from_extracted_folder(data_env, tmp_path):
    (train_x, train_y), (test_x, test_y) = write_fake_cifar(tmp_path / "cifar10" / ARCHIVE_FOLDER)
    ds = load_dataset("cifar10", "train", tmp_path, download=False)
    assert ds.images.shape == (20, 3, 32, 32) and ds.class_names[0] == "airplane"
    np.testing.assert_array_equal(ds.images, train_x)
    np.testing.assert_array_equal(ds.labels, train_y)
    assert not ds.verified  # no SHA256SUMS recorded: loaded, but not claimed verified
    test = load_dataset("cifar10", "test", tmp_path, download=False)
    np.testing.assert_array_equal(test.images, test_x)


def test_batches_directly_in_the_dataset_folder_work_too(data_env, tmp_path):
    write_fake_cifar(tmp_path / "cifar10")
    assert len(load_dataset("cifar10", "test", tmp_path, download=False)) == 4


def make_archive(tmp_path, extra_member=None):
    src = tmp_path / "src"
    src.mkdir()
    arrays = write_fake_cifar(src)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for fname in SPEC.files():
            tar.add(src / fname, arcname=f"{ARCHIVE_FOLDER}/{fname}")
        if extra_member:
            info = tarfile.TarInfo(extra_member)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return buffer.getvalue(), arrays


def test_archive_download_extract_and_verify(data_env, http_mirror, tmp_path, monkeypatch):
    archive, ((train_x, _), (test_x, test_y)) = make_archive(tmp_path, extra_member="../../escape.txt")
    spec = dataclasses.replace(SPEC, archive_md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "cifar10", spec)
    http_mirror.put(f"cifar10/{SPEC.archive}", archive)

    folder = download_dataset("cifar10", tmp_path / "data", mirror=http_mirror.url, progress=False)
    assert not (folder / SPEC.archive).exists()  # archive removed after extraction
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "escape.txt").exists()
    assert sorted(p.name for p in (folder / ARCHIVE_FOLDER).iterdir()) == sorted([*SPEC.files(), "SHA256SUMS"])
    test = load_dataset("cifar10", "test", tmp_path / "data", download=False)
    assert test.verified
    np.testing.assert_array_equal(test.images, test_x)
    np.testing.assert_array_equal(test.labels, test_y)

    # A batch damaged after extraction no longer matches the recorded digest.
    damaged = folder / ARCHIVE_FOLDER / "test_batch.bin"
    data = bytearray(damaged.read_bytes())
    data[5] ^= 1
    damaged.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="test_batch.bin: checksum mismatch"):
        load_dataset("cifar10", "test", tmp_path / "data", download=False)


def test_archive_with_wrong_md5_is_rejected(data_env, http_mirror, tmp_path):
    archive, _ = make_archive(tmp_path)
    http_mirror.put(f"cifar10/{SPEC.archive}", archive)  # the real MD5 cannot match this small archive
    with pytest.raises(DataError, match="checksum mismatch: MD5"):
        download_dataset("cifar10", tmp_path / "data", mirror=http_mirror.url, progress=False)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


def test_extract_rejects_archive_without_expected_members(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("other.bin")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match="archive has no member cifar-10-batches-bin/data_batch_1.bin"):
        extract_batches(path, tmp_path / "out", SPEC.files())


def test_hand_placed_corrupt_archive_is_reported_and_replaced(data_env, http_mirror, tmp_path, monkeypatch):
    from cnnlab.data.verify import CorruptFileWarning

    archive, _ = make_archive(tmp_path)
    spec = dataclasses.replace(SPEC, archive_md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "cifar10", spec)
    http_mirror.put(f"cifar10/{SPEC.archive}", archive)
    target = tmp_path / "data" / "cifar10"
    target.mkdir(parents=True)
    (target / SPEC.archive).write_bytes(archive[: len(archive) // 2])
    with pytest.warns(CorruptFileWarning, match="cifar-10-binary.tar.gz: corrupt"):
        ds = load_dataset("cifar10", "train", tmp_path / "data", mirror=http_mirror.url, progress=False)
    assert ds.verified and len(ds) == 20
    assert http_mirror.hits == [f"/cifar10/{SPEC.archive}"]
    aside = list(target.glob(f"{SPEC.archive}.corrupt-*"))  # the user's damaged archive, renamed, not deleted
    assert len(aside) == 1 and aside[0].read_bytes() == archive[: len(archive) // 2]


def test_hand_placed_good_archive_is_extracted_without_network(data_env, closed_port_url, tmp_path, monkeypatch):
    archive, (_, (test_x, _)) = make_archive(tmp_path)
    spec = dataclasses.replace(SPEC, archive_md5=hashlib.md5(archive).hexdigest())
    monkeypatch.setitem(registry.DATASETS, "cifar10", spec)
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    (tmp_path / "data" / "cifar10" / SPEC.archive).write_bytes(archive)
    ds = load_dataset("cifar10", "test", tmp_path / "data", mirror=closed_port_url, progress=False)
    assert ds.verified
    np.testing.assert_array_equal(ds.images, test_x)
    assert (tmp_path / "data" / "cifar10" / SPEC.archive).read_bytes() == archive  # a hand-placed file stays
