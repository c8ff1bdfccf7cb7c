"""Downloads against a local HTTP server (127.0.0.1, files from a temporary folder): good, corrupt,
interrupted, fallback mirror, no network, and a corrupt cached file replaced."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlab.data import download_dataset, load_dataset
from cnnlab.data.download import fetch, mirror_urls
from cnnlab.data.registry import get_spec
from cnnlab.data.verify import CorruptFileWarning
from cnnlab.engine.errors import DataError

FILES = get_spec("mnist").files()


def publish(mirror, fake, prefix="m", corrupt=()):
    """Put the fake dataset's .gz files on the mirror under ``<prefix>/mnist/``; ``corrupt`` ones altered."""
    for fname in FILES:
        payload = fake.payloads[fname]
        if fname in corrupt:
            payload = payload[:-1] + bytes([(payload[-1] + 1) % 10])  # valid IDX, wrong content
        mirror.put(f"{prefix}/mnist/{fname}.gz", gzip.compress(payload))
    return f"{mirror.url}/{prefix}"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_is_verified_and_loadable(fake_mnist, http_mirror, tmp_path):
    base = publish(http_mirror, fake_mnist)
    target = download_dataset("mnist", tmp_path / "dl", mirror=base, progress=False)
    assert target == tmp_path / "dl" / "mnist"
    assert leftovers(target) == sorted(f"{f}.gz" for f in FILES)  # no temporary files left
    ds = load_dataset("mnist", "train", tmp_path / "dl", download=False)
    assert ds.verified
    np.testing.assert_array_equal(ds.images[:, 0], fake_mnist.arrays["train"][0])
    assert sorted(http_mirror.hits) == sorted(f"/m/mnist/{f}.gz" for f in FILES)


def test_second_download_fetches_nothing(fake_mnist, http_mirror, tmp_path):
    base = publish(http_mirror, fake_mnist)
    download_dataset("mnist", tmp_path / "dl", mirror=base, progress=False)
    http_mirror.hits.clear()
    download_dataset("mnist", tmp_path / "dl", mirror=base, progress=False)
    assert http_mirror.hits == []


def test_corrupt_download_leaves_nothing_in_the_cache(fake_mnist, http_mirror, tmp_path):
    bad = "train-labels-idx1-ubyte"
    base = publish(http_mirror, fake_mnist, corrupt={bad})
    with pytest.raises(DataError) as info:
        download_dataset("mnist", tmp_path / "dl", mirror=base, progress=False)
    message = str(info.value)
    assert "checksum mismatch" in message and f"{base}/mnist/{bad}.gz" in message
    assert f"{bad}.gz" not in leftovers(tmp_path / "dl" / "mnist")
    assert not [n for n in leftovers(tmp_path / "dl" / "mnist") if n.endswith(".part")]


def test_interrupted_transfer_leaves_nothing_in_the_cache(fake_mnist, http_mirror, tmp_path):
    base = publish(http_mirror, fake_mnist)
    cut = "train-images-idx3-ubyte"
    http_mirror.interrupt.add(f"/m/mnist/{cut}.gz")
    with pytest.raises(DataError, match="interrupted transfer"):
        download_dataset("mnist", tmp_path / "dl", mirror=base, progress=False)
    assert leftovers(tmp_path / "dl" / "mnist") == []  # the first file failed, nothing else was tried


def test_fallback_mirror_is_used_after_a_bad_one(fake_mnist, http_mirror, tmp_path):
    bad_base = publish(http_mirror, fake_mnist, prefix="bad", corrupt=set(FILES))
    good_base = publish(http_mirror, fake_mnist, prefix="good")
    http_mirror.interrupt.add("/bad/mnist/t10k-images-idx3-ubyte.gz")
    download_dataset("mnist", tmp_path / "dl", mirror=f"{bad_base},{good_base}", progress=False)
    assert load_dataset("mnist", "test", tmp_path / "dl", download=False).verified
    assert {h.split("/")[1] for h in http_mirror.hits} == {"bad", "good"}


def test_missing_file_on_mirror_is_http_404(fake_mnist, http_mirror, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download_dataset("mnist", tmp_path / "dl", mirror=http_mirror.url + "/nothing-here", progress=False)


def test_no_network_error_lists_files_and_where_to_put_them(fake_mnist, closed_port_url, tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "train", tmp_path / "dl", mirror=closed_port_url, progress=False)
    message = str(info.value)
    assert "could not be downloaded" in message
    assert f"Put these files in {tmp_path / 'dl' / 'mnist'}/" in message
    for fname in FILES:
        assert f"{fname}.gz" in message
    assert leftovers(tmp_path / "dl" / "mnist") == []


def test_load_downloads_a_missing_dataset_from_the_env_mirror(fake_mnist, http_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_MIRROR", publish(http_mirror, fake_mnist))
    ds = load_dataset("mnist", "test", tmp_path / "dl", progress=True)  # progress bar on: must not break
    np.testing.assert_array_equal(ds.labels, fake_mnist.arrays["test"][1])
    assert ds.verified


def test_corrupt_cached_file_is_reported_and_replaced(fake_mnist, http_mirror):
    base = publish(http_mirror, fake_mnist)
    cached = fake_mnist.folder / "t10k-images-idx3-ubyte.gz"
    damaged = bytearray(fake_mnist.payloads["t10k-images-idx3-ubyte"])
    damaged[100] ^= 0xFF
    cached.write_bytes(gzip.compress(bytes(damaged)))
    with pytest.warns(CorruptFileWarning, match="t10k-images-idx3-ubyte.gz: corrupt"):
        ds = load_dataset("mnist", "test", fake_mnist.data_dir, mirror=base, progress=False)
    np.testing.assert_array_equal(ds.images[:, 0], fake_mnist.arrays["test"][0])
    assert gzip.decompress(cached.read_bytes()) == fake_mnist.payloads["t10k-images-idx3-ubyte"]
    assert http_mirror.hits == ["/m/mnist/t10k-images-idx3-ubyte.gz"]  # only the bad file fetched again
    aside = list(fake_mnist.folder.glob("t10k-images-idx3-ubyte.gz.corrupt-*"))
    assert len(aside) == 1 and gzip.decompress(aside[0].read_bytes()) == bytes(damaged)  # the user's, kept


@pytest.mark.parametrize("damage", ["flipped byte", "random bytes", "empty"])
def test_corrupt_cached_file_is_never_deleted_when_no_copy_arrives(fake_mnist, http_mirror, damage):
    """Offline (or every mirror bad): the user's file stays exactly where and as it was, and the error says so."""
    bad_base = publish(http_mirror, fake_mnist, prefix="bad", corrupt=set(FILES))
    cached = fake_mnist.folder / "train-labels-idx1-ubyte.gz"
    payload = bytearray(fake_mnist.payloads["train-labels-idx1-ubyte"])
    content = {"flipped byte": gzip.compress(bytes(payload[:-1]) + bytes([(payload[-1] + 1) % 10])),
               "random bytes": np.random.default_rng(0).bytes(500), "empty": b""}[damage]
    cached.write_bytes(content)
    with pytest.warns(CorruptFileWarning), pytest.raises(DataError, match="could not be downloaded"):
        load_dataset("mnist", "train", fake_mnist.data_dir, mirror=bad_base, progress=False)
    assert cached.read_bytes() == content
    assert not list(fake_mnist.folder.glob("*.corrupt-*"))


def test_unreadable_cached_gzip_is_replaced_by_download_dataset(fake_mnist, http_mirror):
    base = publish(http_mirror, fake_mnist)
    cached = fake_mnist.folder / "train-labels-idx1-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:-8])  # truncated gzip stream
    with pytest.warns(CorruptFileWarning):
        download_dataset("mnist", fake_mnist.data_dir, mirror=base, progress=False)
    assert load_dataset("mnist", "train", fake_mnist.data_dir, download=False).verified


def test_mirror_urls_default_env_and_argument(monkeypatch):
    spec = get_spec("fashion-mnist")
    monkeypatch.delenv("CNNLAB_MIRROR", raising=False)
    assert mirror_urls(spec) == list(spec.mirrors)
    monkeypatch.setenv("CNNLAB_MIRROR", "http://a/x/, http://b")
    assert mirror_urls(spec) == ["http://a/x/fashion-mnist", "http://b/fashion-mnist"]
    assert mirror_urls(spec, ["http://c"]) == ["http://c/fashion-mnist"]


def test_fetch_renames_only_after_the_check(http_mirror, tmp_path):
    http_mirror.put("f.bin", b"hello")
    seen = []

    def check(tmp):
        seen.append((tmp.name, tmp.read_bytes(), (tmp_path / "out" / "f.bin").exists()))

    dest = fetch([f"{http_mirror.url}/f.bin"], tmp_path / "out" / "f.bin", check, progress=False)
    assert dest.read_bytes() == b"hello"
    (tmp_name, content, existed_during_check), = seen
    assert tmp_name.endswith(".part") and content == b"hello" and not existed_during_check
