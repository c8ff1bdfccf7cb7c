"""KMNIST, QMNIST, EMNIST digits/letters, and copies torchvision or Keras already downloaded.

Every file is built by the test in the real format (gzip'd IDX; QMNIST's int32 label table; EMNIST's
``gzip.zip`` of gzip'd, transposed IDX members; Keras' ``mnist.npz``), and the registry entry is pointed
at the digests of those small files for the duration of the test.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main as cli_main
from cnnlab.data import download_dataset, load_dataset, registry
from cnnlab.data.idx import encode_idx
from cnnlab.data.verify import ChecksumError
from cnnlab.engine.errors import DataError
from conftest import make_digits


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def register(monkeypatch, name: str, **changes):
    """Replace registry entry ``name`` by a copy with ``changes`` (its digests, mostly) for this test."""
    spec = dataclasses.replace(registry.DATASETS[name], **changes)
    monkeypatch.setitem(registry.DATASETS, name, spec)
    return spec


def write_gz_set(folder, spec, arrays):
    """Write ``arrays`` (split -> (images, labels)) as ``spec``'s gzip'd IDX files; return name -> .gz bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, (images, labels) in arrays.items():
        for fname, array in zip(spec.splits[split], (images, labels)):
            files[f"{fname}.gz"] = gzip.compress(encode_idx(array), mtime=0)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


# -- KMNIST: IDX like MNIST, digests of the published .gz files --------------------------------------

@pytest.fixture
def fake_kmnist(tmp_path, monkeypatch, data_env):
    arrays = {"train": make_digits(30, seed=3), "test": make_digits(10, seed=4)}
    data_dir = tmp_path / "data"
    files = write_gz_set(data_dir / "kmnist", registry.KMNIST, arrays)
    register(monkeypatch, "kmnist", download_sha256={n: sha256(b) for n, b in files.items()},
             download_md5={n: md5(b) for n, b in files.items()}, mirrors=("http://127.0.0.1:9/unused",))
    return data_dir, arrays, files


def test_kmnist_loads_verified_from_its_gz_files(fake_kmnist):
    data_dir, arrays, _ = fake_kmnist
    ds = load_dataset("kmnist", "train", data_dir, download=False)
    assert ds.verified and ds.name == "kmnist" and ds.images.shape == (30, 1, 28, 28)
    assert ds.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    np.testing.assert_array_equal(ds.images[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(ds.labels, arrays["train"][1])


def test_kmnist_gz_is_preferred_and_a_gunzipped_copy_alone_loads_unverified(fake_kmnist, tmp_path):
    data_dir, arrays, files = fake_kmnist
    (data_dir / "kmnist" / "t10k-images-idx3-ubyte").write_bytes(b"not read: the .gz has the digest")
    assert load_dataset("kmnist", "test", data_dir, download=False).verified
    raw_only = tmp_path / "raw" / "kmnist"
    raw_only.mkdir(parents=True)
    for name, data in files.items():
        (raw_only / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    ds = load_dataset("kmnist", "test", tmp_path / "raw", download=False)
    assert not ds.verified  # nobody publishes digests of the uncompressed files: said, not invented
    np.testing.assert_array_equal(ds.images[:, 0], arrays["test"][0])


def test_kmnist_damaged_gz_is_refused(fake_kmnist):
    data_dir, _, files = fake_kmnist
    path = data_dir / "kmnist" / "train-labels-idx1-ubyte.gz"
    labels = gzip.decompress(files[path.name])
    path.write_bytes(gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10]), mtime=0))  # valid, wrong
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        load_dataset("kmnist", "train", data_dir, download=False)


def test_kmnist_download_checks_sha256_and_md5(fake_kmnist, http_mirror, tmp_path, monkeypatch):
    _, arrays, files = fake_kmnist
    for name, data in files.items():
        http_mirror.put(f"m/kmnist/{name}", data)
    target = download_dataset("kmnist", tmp_path / "dl", mirror=f"{http_mirror.url}/m", progress=False)
    assert sorted(p.name for p in target.iterdir()) == sorted(files)
    assert load_dataset("kmnist", "test", tmp_path / "dl", download=False).verified
    # The same bytes with a different published MD5 are refused, and nothing is left behind.
    bad = dict(registry.DATASETS["kmnist"].download_md5, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    register(monkeypatch, "kmnist", download_md5=bad)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: checksum mismatch: MD5"):
        download_dataset("kmnist", tmp_path / "dl2", mirror=f"{http_mirror.url}/m", progress=False)
    assert "t10k-labels-idx1-ubyte.gz" not in [p.name for p in (tmp_path / "dl2" / "kmnist").iterdir()]


def test_kmnist_offline_is_one_clear_error_without_traceback(data_env, closed_port_url, tmp_path, capsys):
    code = cli_main(["data", "download", "kmnist", "--data-dir", str(tmp_path), "--mirror", closed_port_url])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    first = err.splitlines()[0]  # the whole story on the first line; instructions follow
    assert first.startswith("error: dataset 'kmnist' is not available and could not be downloaded: "
                            "could not download train-images-idx3-ubyte.gz: no mirror could be reached (offline?): "
                            f"{closed_port_url}/kmnist/train-images-idx3-ubyte.gz: ")
    assert "Connection refused" in first
    assert "http://codh.rois.ac.jp/kmnist/dataset/kmnist/" in err  # where it is published
    assert not (tmp_path / "kmnist").exists() or not any((tmp_path / "kmnist").iterdir())


# -- QMNIST: the class is column 0 of an int32 (N, 8) label table ------------------------------------

def qmnist_labels(classes: np.ndarray, seed: int) -> np.ndarray:
    """QMNIST's extended labels: class, NIST series, writer id, digit index, ... (int32 (N, 8))."""
    table = np.random.default_rng(seed).integers(0, 4000, size=(len(classes), 8)).astype(np.int32)
    table[:, 0] = classes
    return table


def test_qmnist_uses_the_class_column_of_the_extended_labels(tmp_path, monkeypatch, data_env):
    images, classes = make_digits(25, seed=5)
    arrays = {split: (images, qmnist_labels(classes, seed=6)) for split in ("train", "test")}
    files = write_gz_set(tmp_path / "qmnist", registry.QMNIST, arrays)
    assert set(files) == {"qmnist-train-images-idx3-ubyte.gz", "qmnist-train-labels-idx2-int.gz",
                          "qmnist-test-images-idx3-ubyte.gz", "qmnist-test-labels-idx2-int.gz"}
    assert gzip.decompress(files["qmnist-test-labels-idx2-int.gz"])[:4] == b"\0\0\x0c\x02"  # int32, rank 2
    register(monkeypatch, "qmnist", download_sha256={n: sha256(b) for n, b in files.items()})
    ds = load_dataset("qmnist", "test", tmp_path, download=False)
    assert ds.verified and ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, classes)  # not the writer ids of the other columns
    np.testing.assert_array_equal(ds.images[:, 0], images)


def test_qmnist_plain_label_vector_is_refused(tmp_path, data_env):
    images, classes = make_digits(5, seed=7)
    write_gz_set(tmp_path / "qmnist", registry.QMNIST, {"train": (images, classes)})
    with pytest.raises(DataError, match=r"qmnist-train-labels-idx2-int.gz: expected a label table \(N, K\)"):
        load_dataset("qmnist", "train", tmp_path, download=False, verify_checksums=False)


# -- EMNIST: gzip'd IDX members of gzip.zip, images transposed, letters labelled 1..26 ---------------

def emnist_zip(path, subsets: dict, extra_members: dict | None = None) -> bytes:
    """Write an EMNIST-like ``gzip.zip``: subset -> split -> (upright images, stored labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # as NIST's: the members are gzip already
        for subset, splits in subsets.items():
            for split, (images, labels) in splits.items():
                stored = np.ascontiguousarray(images.transpose(0, 2, 1))  # EMNIST stores columns as rows
                for kind, array in (("images-idx3", stored), ("labels-idx1", labels)):
                    member = f"gzip/emnist-{subset}-{split}-{kind}-ubyte.gz"
                    zf.writestr(member, gzip.compress(encode_idx(array), mtime=0))
            zf.writestr(f"gzip/emnist-{subset}-mapping.txt", "0 48 48\n")
        for member, data in (extra_members or {}).items():
            zf.writestr(member, data)
    return path.read_bytes()


def letters(n: int, seed: int):
    images, _ = make_digits(n, seed)
    labels = (np.arange(n) % 26 + 1).astype(np.uint8)  # 1..26, as EMNIST stores them
    return images, labels


@pytest.fixture
def fake_emnist(tmp_path, monkeypatch, data_env):
    subsets = {"letters": {"train": letters(52, 8), "test": letters(26, 9)},
               "digits": {"train": make_digits(20, 10), "test": make_digits(10, 11)}}
    archive = tmp_path / "data" / "emnist" / "gzip.zip"
    data = emnist_zip(archive, subsets, {"gzip/emnist-byclass-train-images-idx3-ubyte.gz": b"\0" * 4096})
    for name in ("emnist-letters", "emnist-digits"):
        register(monkeypatch, name, download_sha256={"gzip.zip": sha256(data)}, archive_md5=md5(data),
                 mirrors=("http://127.0.0.1:9/unused",))
    return tmp_path / "data", subsets, data


def test_emnist_letters_read_from_the_zip_upright_and_from_zero(fake_emnist):
    data_dir, subsets, _ = fake_emnist
    ds = load_dataset("emnist-letters", "train", data_dir, download=False)
    images, stored_labels = subsets["letters"]["train"]
    assert ds.verified and ds.source == data_dir / "emnist"
    np.testing.assert_array_equal(ds.images[:, 0], images)  # transposed back: upright
    np.testing.assert_array_equal(ds.labels, stored_labels.astype(np.int64) - 1)  # 1..26 -> 0..25
    assert ds.class_names[ds.labels[0]] == "a" and ds.num_classes == 26
    assert ds.images.flags.c_contiguous
    # Nothing was extracted: the archive is the only file, and the other subset reads from it too.
    assert [p.name for p in (data_dir / "emnist").iterdir()] == ["gzip.zip"]
    digits = load_dataset("emnist-digits", "test", data_dir, download=False)
    np.testing.assert_array_equal(digits.images[:, 0], subsets["digits"]["test"][0])
    np.testing.assert_array_equal(digits.labels, subsets["digits"]["test"][1])


def test_emnist_letters_label_zero_is_out_of_range(tmp_path, data_env):
    images, labels = letters(26, 12)
    labels[3] = 0
    emnist_zip(tmp_path / "emnist" / "gzip.zip", {"letters": {"train": (images, labels)}})
    with pytest.raises(DataError, match=r"emnist-letters-train-labels-idx1-ubyte.gz: label 0 out of range; "
                                        r"expected 1..26"):
        load_dataset("emnist-letters", "train", tmp_path, download=False, verify_checksums=False)


def test_emnist_archive_without_the_subset_names_the_missing_member(tmp_path, data_env):
    emnist_zip(tmp_path / "emnist" / "gzip.zip", {"digits": {"train": make_digits(5, 13)}})
    with pytest.raises(DataError, match=r"no member 'gzip/emnist-letters-train-images-idx3-ubyte.gz'"):
        load_dataset("emnist-letters", "train", tmp_path, download=False, verify_checksums=False)


def test_emnist_damaged_archive_is_refused(fake_emnist):
    data_dir, _, data = fake_emnist
    (data_dir / "emnist" / "gzip.zip").write_bytes(data[:-100])
    with pytest.raises(ChecksumError, match="gzip.zip: damaged zip archive .*checksum mismatch"):
        load_dataset("emnist-digits", "train", data_dir, download=False)
    with pytest.raises(DataError, match="damaged zip archive"):
        load_dataset("emnist-digits", "train", data_dir, download=False, verify_checksums=False)


def test_emnist_download_once_for_both_subsets(fake_emnist, http_mirror, tmp_path):
    _, subsets, data = fake_emnist
    http_mirror.put("m/emnist/gzip.zip", data)
    mirror = f"{http_mirror.url}/m"
    ds = load_dataset("emnist-letters", "test", tmp_path / "dl", mirror=mirror, progress=False)
    assert ds.verified and http_mirror.hits == ["/m/emnist/gzip.zip"]
    digits = load_dataset("emnist-digits", "train", tmp_path / "dl", mirror=mirror, progress=False)
    assert http_mirror.hits == ["/m/emnist/gzip.zip"]  # the shared archive was not fetched again
    np.testing.assert_array_equal(digits.images[:, 0], subsets["digits"]["train"][0])
    assert sorted(p.name for p in (tmp_path / "dl" / "emnist").iterdir()) == ["gzip.zip"]


# -- copies torchvision and Keras already downloaded ---------------------------------------------------

def test_mnist_found_in_a_torchvision_root(fake_mnist, tmp_path, monkeypatch):
    root = tmp_path / "torch-data"
    raw = root / "MNIST" / "raw"  # torchvision.datasets.MNIST(root) keeps the gunzipped files here
    raw.mkdir(parents=True)
    for fname, payload in fake_mnist.payloads.items():
        (raw / fname).write_bytes(payload)
    empty = tmp_path / "empty"
    with pytest.raises(DataError, match="download disabled"):
        load_dataset("mnist", "train", empty, download=False)
    monkeypatch.setenv("CNNLAB_TORCHVISION_ROOT", str(root))
    ds = load_dataset("mnist", "train", empty, download=False)
    assert ds.source == raw and ds.verified  # MNIST's digests are of the payload: raw files verify too
    np.testing.assert_array_equal(ds.images[:, 0], fake_mnist.arrays["train"][0])
    monkeypatch.setenv("CNNLAB_TORCHVISION_ROOT", "")
    assert load_dataset("mnist", "test", root, download=False).source == raw  # the data folder as a root


def test_mnist_found_in_keras_npz_read_without_pickle(fake_mnist, tmp_path, monkeypatch):
    keras_home = tmp_path / "keras"
    (keras_home / "datasets").mkdir(parents=True)
    npz = keras_home / "datasets" / "mnist.npz"
    (x_train, y_train), (x_test, y_test) = fake_mnist.arrays["train"], fake_mnist.arrays["test"]
    np.savez_compressed(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    register(monkeypatch, "mnist", keras_npz=("mnist.npz", sha256(npz.read_bytes())))
    empty = tmp_path / "empty"
    ds = load_dataset("mnist", "test", empty, download=False)
    assert ds.source == npz and ds.verified and ds.images.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(ds.images[:, 0], x_test)
    np.testing.assert_array_equal(ds.labels, y_test)
    # cnnlab's own data folder comes first
    assert load_dataset("mnist", "test", fake_mnist.data_dir, download=False).source == fake_mnist.folder
    # an npz holding Python objects is refused, never unpickled
    np.savez(npz, x_train=np.array([object()], dtype=object), y_train=y_train, x_test=x_test, y_test=y_test)
    register(monkeypatch, "mnist", keras_npz=("mnist.npz", sha256(npz.read_bytes())))
    with pytest.raises(DataError, match=r"mnist.npz: not a plain Keras .npz of arrays"):
        load_dataset("mnist", "train", empty, download=False)
    # and a file that is not Keras' is an error naming it, not data
    register(monkeypatch, "mnist", keras_npz=("mnist.npz", "0" * 64))
    with pytest.raises(ChecksumError, match="mnist.npz: checksum mismatch"):
        load_dataset("mnist", "test", empty, download=False)
    assert npz.is_file()  # never deleted


def test_foreign_folders_searched(data_env, tmp_path, monkeypatch):
    from cnnlab.data.elsewhere import foreign_dirs

    monkeypatch.setenv("CNNLAB_TORCHVISION_ROOT", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    assert foreign_dirs(registry.FASHION_MNIST, tmp_path / "d") == [
        tmp_path / "d" / "FashionMNIST" / "raw", tmp_path / "a" / "FashionMNIST" / "raw",
        tmp_path / "b" / "FashionMNIST" / "raw", tmp_path / "k" / "datasets" / "fashion-mnist"]
    monkeypatch.delenv("CNNLAB_TORCHVISION_ROOT")
    assert foreign_dirs(registry.EMNIST_LETTERS, tmp_path / "d")[-1] == Path.cwd() / "data" / "EMNIST" / "raw"


def test_emnist_loose_files_as_torchvision_leaves_them(tmp_path, data_env, monkeypatch):
    """torchvision extracts the members and deletes the zip: EMNIST/raw/emnist-*-ubyte, gunzipped."""
    images, labels = letters(26, 14)
    raw = tmp_path / "tv" / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "emnist-letters-test-images-idx3-ubyte").write_bytes(encode_idx(images.transpose(0, 2, 1).copy()))
    (raw / "emnist-letters-test-labels-idx1-ubyte").write_bytes(encode_idx(labels))
    monkeypatch.setenv("CNNLAB_TORCHVISION_ROOT", str(tmp_path / "tv"))
    ds = load_dataset("emnist-letters", "test", tmp_path / "empty", download=False)
    assert ds.source == raw and not ds.verified  # only the whole gzip.zip has a published digest
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels - 1)


def test_data_info_reports_the_new_sets(fake_kmnist, fake_emnist, capsys):
    data_dir = fake_kmnist[0]
    assert cli_main(["data", "info", "kmnist", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"kmnist: found in {data_dir / 'kmnist'}, verified (SHA-256)")
    assert "classes (10): o: " in out
    assert cli_main(["data", "info", "emnist-letters", "--data-dir", str(fake_emnist[0])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"emnist-letters: found in {fake_emnist[0] / 'emnist'}, verified (SHA-256)")
    assert re.search(r"train +52 images uint8 \(52, 1, 28, 28\)", out) and "classes (26): a: 2, b: 2" in out
