"""Finding, verifying and loading named datasets (on small synthetic IDX files written by the tests)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset, paths, verify
from cnnlab.data.idx import encode_idx
from cnnlab.data.registry import DATASETS, DIGITS, FASHION_CLASSES, get_spec
from cnnlab.engine.errors import DataError

# -- where data lives ------------------------------------------------------------------------------


def test_data_root_precedence(data_env, monkeypatch, tmp_path):
    assert paths.data_root() == data_env / "cnnlab"  # XDG_CACHE_HOME/cnnlab
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert paths.data_root() == tmp_path / "env"
    assert paths.data_root(tmp_path / "arg") == tmp_path / "arg"


def test_user_cache_dir_falls_back_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.user_cache_dir() == tmp_path / ".cache" / "cnnlab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says: absolute paths only
    assert paths.user_cache_dir() == tmp_path / ".cache" / "cnnlab"


def test_dataset_dirs_include_debian_fashion_mnist(data_env, tmp_path):
    dirs = paths.dataset_dirs("fashion-mnist", tmp_path)
    assert dirs == [tmp_path / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist")]
    assert paths.dataset_dirs("mnist", tmp_path) == [tmp_path / "mnist"]


def test_find_file_accepts_raw_or_gz_and_prefers_raw(tmp_path):
    assert paths.find_file(tmp_path, "f") is None
    (tmp_path / "f.gz").write_bytes(b"")
    assert paths.find_file(tmp_path, "f") == tmp_path / "f.gz"
    (tmp_path / "f").write_bytes(b"")
    assert paths.find_file(tmp_path, "f") == tmp_path / "f"


# -- the registry ----------------------------------------------------------------------------------


def test_registry_names_and_classes():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist", "qmnist", "emnist-digits", "emnist-letters",
                             "cifar10"}
    assert get_spec("mnist").class_names == DIGITS
    assert get_spec("Fashion-MNIST").class_names[9] == "Ankle boot" == FASHION_CLASSES[-1]
    assert get_spec("cifar10").sample_shape == (3, 32, 32)
    assert get_spec("emnist-letters").class_names[0] == "a" and len(get_spec("emnist-letters").class_names) == 26
    for spec in DATASETS.values():
        assert len(spec.mirrors) >= 1
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in [*spec.sha256.values(), *spec.download_sha256.values()])
        assert all(len(d) == 32 and int(d, 16) >= 0 for d in spec.download_md5.values())
        # every file that is downloaded has a digest to check it against, never nothing
        for name in spec.download_names():
            assert (name.removesuffix(".gz") in spec.sha256 or name in spec.download_sha256
                    or name == spec.archive and spec.archive_md5), (spec.name, name)
    assert len(get_spec("mnist").mirrors) >= 2  # primary + fallback


def test_digests_match_the_shared_sums_files():
    """The constants in the registry are the ones published next to the shared datasets."""
    from conftest import real_data_dir

    root = real_data_dir()
    if root is None or not (root / "mnist" / "SHA256SUMS.uncompressed").is_file():
        pytest.skip("CNNLAB_DATA with SHA256SUMS.uncompressed files not available")
    for name in ("mnist", "fashion-mnist"):
        assert verify.read_sums(root / name / "SHA256SUMS.uncompressed") == get_spec(name).sha256


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match=r"unknown dataset 'mnsit'; expected one of: mnist, fashion-mnist, kmnist, qmnist, "
                       r"emnist-digits, emnist-letters, cifar10, folder:PATH"):
        load_dataset("mnsit")
    with pytest.raises(DataError, match=r"no split 'validation'"):
        load_dataset("mnist", "validation")


# -- loading ---------------------------------------------------------------------------------------


def test_load_fake_mnist_shapes_dtypes_and_values(fake_mnist):
    for split, (images, labels) in fake_mnist.arrays.items():
        ds = load_dataset("mnist", split, fake_mnist.data_dir, download=False)
        assert ds.images.shape == (len(images), 1, 28, 28) and ds.images.dtype == np.uint8
        assert ds.labels.shape == (len(images),) and ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.images[:, 0], images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert ds.class_names == DIGITS and ds.name == "mnist" and ds.split == split
        assert ds.source == fake_mnist.folder and ds.verified
        np.testing.assert_array_equal(ds.class_counts(), np.bincount(labels, minlength=10))


def test_data_dir_from_environment(fake_mnist, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(fake_mnist.data_dir))
    assert len(load_dataset("mnist", "test", download=False)) == 20


def test_raw_files_and_recompressed_files_are_accepted(fake_mnist):
    """The digest covers the payload, so a raw copy or one gzipped differently verifies the same."""
    name = "train-images-idx3-ubyte"
    (fake_mnist.folder / f"{name}.gz").unlink()
    (fake_mnist.folder / name).write_bytes(fake_mnist.payloads[name])
    labels = "train-labels-idx1-ubyte"
    (fake_mnist.folder / f"{labels}.gz").write_bytes(gzip.compress(fake_mnist.payloads[labels], compresslevel=1))
    ds = load_dataset("mnist", "train", fake_mnist.data_dir, download=False)
    assert ds.verified and len(ds) == 60


def test_verification_is_recorded_and_reused(fake_mnist, monkeypatch, data_env):
    load_dataset("mnist", "test", fake_mnist.data_dir, download=False)
    stamps = json.loads((data_env / "cnnlab" / verify.STAMP_NAME).read_text())
    assert {Path(k).name for k in stamps} == {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}

    def no_hashing(data):
        raise AssertionError("payload hashed again although the file was already verified")

    monkeypatch.setattr(verify, "sha256_hex", no_hashing)
    assert load_dataset("mnist", "test", fake_mnist.data_dir, download=False).verified  # in-process record
    verify._memo.clear()
    assert load_dataset("mnist", "test", fake_mnist.data_dir, download=False).verified  # stamp file

    # A changed file (new mtime) must be hashed again.
    path = fake_mnist.folder / "t10k-labels-idx1-ubyte.gz"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="hashed again"):
        load_dataset("mnist", "test", fake_mnist.data_dir, download=False)


def test_same_size_edit_with_the_mtime_restored_is_hashed_again(fake_mnist, data_env):
    """The attack that fooled a size + mtime record: change one label, keep the size, put the mtime back."""
    assert load_dataset("mnist", "test", fake_mnist.data_dir, download=False).verified
    path = fake_mnist.folder / "t10k-labels-idx1-ubyte.gz"
    stat = path.stat()
    original = fake_mnist.payloads["t10k-labels-idx1-ubyte"]
    candidates = []  # one label changed, anywhere, such that the compressed file keeps its size
    for index in range(8, len(original)):
        for label in range(10):
            if label != original[index]:
                payload = bytearray(original)
                payload[index] = label
                candidates.append(gzip.compress(bytes(payload), mtime=0))
    edited = next(c for c in candidates if len(c) == stat.st_size)  # only the content (and ctime) differ
    path.write_bytes(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    verify._memo.clear()  # a new process: only the stamp file remembers
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("mnist", "test", fake_mnist.data_dir, download=False)


def test_corrupt_file_without_download_is_an_error(fake_mnist):
    name = "t10k-labels-idx1-ubyte"
    bad = bytearray(fake_mnist.payloads[name])
    bad[-1] = (bad[-1] + 1) % 10  # still a valid IDX file with valid labels: only the digest can tell
    path = fake_mnist.folder / f"{name}.gz"
    path.write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(verify.ChecksumError) as info:
        load_dataset("mnist", "test", fake_mnist.data_dir, download=False)
    assert str(path) in str(info.value) and "checksum mismatch" in str(info.value)
    assert path.exists()  # not deleted when we may not download a replacement


def test_skipping_verification_marks_dataset_unverified(fake_mnist):
    path = fake_mnist.folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(20, np.uint8))))
    ds = load_dataset("mnist", "test", fake_mnist.data_dir, download=False, verify_checksums=False)
    assert not ds.verified and ds.labels.sum() == 0


@pytest.mark.parametrize(
    "labels, problem",
    [(np.full(20, 10, np.uint8), "label 10 out of range"), (np.zeros(19, np.uint8), "image and label counts differ")],
)
def test_inconsistent_files_are_errors_even_unverified(fake_mnist, labels, problem):
    (fake_mnist.folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(DataError, match=problem) as info:
        load_dataset("mnist", "test", fake_mnist.data_dir, download=False, verify_checksums=False)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_missing_dataset_without_download_says_what_to_put_where(data_env, tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", "train", tmp_path / "empty", download=False)
    message = str(info.value)
    assert str(tmp_path / "empty" / "fashion-mnist") in message
    for fname in get_spec("fashion-mnist").files():
        assert f"{fname}.gz" in message
    assert "fashion-mnist.s3" in message


def test_system_folder_is_searched_after_the_data_folder(fake_mnist, monkeypatch, tmp_path):
    monkeypatch.setitem(paths.SYSTEM_DIRS, "mnist", (fake_mnist.folder,))
    ds = load_dataset("mnist", "test", tmp_path / "empty", download=False)
    assert ds.source == fake_mnist.folder and ds.verified


@pytest.mark.parametrize(
    "labels, problem",
    [(np.array([3] * 5 + [200] + [3] * 14, np.uint8), "label 200 out of range; expected 0..9"),
     (np.zeros(19, np.uint8), "image and label counts differ")],
)
def test_a_checksum_mismatch_says_first_what_is_wrong_with_the_file(fake_mnist, labels, problem):
    """Verified loading of a damaged file: the message leads with the structural problem, then the checksum,
    and the file is still there (never deleted)."""
    from cnnlab.data.verify import ChecksumError

    path = fake_mnist.folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(ChecksumError) as info:
        load_dataset("mnist", "test", fake_mnist.data_dir, download=False)
    message = str(info.value)
    assert problem in message and message.index(problem) < message.index("checksum mismatch")
    assert path.is_file()
