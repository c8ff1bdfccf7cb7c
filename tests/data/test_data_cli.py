"""The ``data`` click group, driven with click's CliRunner."""

from __future__ import annotations

import gzip

import numpy as np
from click.testing import CliRunner
from PIL import Image

from cnnlab.data.cli import data
from cnnlab.data.registry import get_spec
from cnnlab.engine.errors import DataError


def run(*args, env=None):
    return CliRunner().invoke(data, list(args), env=env)


def test_info_shows_found_verified_shapes_and_class_counts(fake_mnist):
    result = run("info", "mnist", "--data-dir", str(fake_mnist.data_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"mnist: found in {fake_mnist.folder}, verified (SHA-256)" in out
    assert "train     60 images uint8 (60, 1, 28, 28), labels int64 (60,)" in out
    assert "test      20 images uint8 (20, 1, 28, 28)" in out
    counts = np.bincount(fake_mnist.arrays["test"][1], minlength=10)
    assert "classes (10): " + ", ".join(f"{d}: {n}" for d, n in enumerate(counts)) in out


def test_info_lists_every_dataset_and_says_what_is_missing(fake_mnist):
    result = run("info", env={"CNNLAB_DATA": str(fake_mnist.data_dir)})
    assert result.exit_code == 0, result.output
    assert "mnist: found in" in result.output
    assert "cifar10: not found" in result.output and "cnnlab data download cifar10" in result.output
    assert "fashion-mnist:" in result.output


def test_info_reports_a_corrupt_file(fake_mnist):
    name = "t10k-labels-idx1-ubyte"
    bad = bytearray(fake_mnist.payloads[name])
    bad[-1] = (bad[-1] + 1) % 10
    (fake_mnist.folder / f"{name}.gz").write_bytes(gzip.compress(bytes(bad)))
    result = run("info", "mnist", "--data-dir", str(fake_mnist.data_dir))
    assert result.exit_code == 1  # a script can tell the dataset is not usable
    assert "test  unavailable:" in result.output and "checksum mismatch" in result.output
    assert "train     60 images" in result.output
    assert "verified" not in result.output.splitlines()[0] and "CORRUPT OR INCOMPLETE (1 of 2" in result.output


def test_info_on_a_missing_folder_does_not_say_found(tmp_path, data_env):
    result = run("info", f"folder:{tmp_path / 'nowhere'}")
    assert result.exit_code == 1
    assert "no such folder" in result.output and "found" not in result.output


def test_info_on_a_folder(tmp_path, data_env):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / cls / "x.png")
    result = run("info", f"folder:{tmp_path / 'imgs'}")
    assert result.exit_code == 0, result.output
    assert "NOT verified" in result.output and "(2, 3, 32, 32)" in result.output and "a: 1, b: 1" in result.output


def test_download_from_a_mirror(fake_mnist, http_mirror, tmp_path):
    for fname in get_spec("mnist").files():
        http_mirror.put(f"mnist/{fname}.gz", fake_mnist.gz(fname))
    result = run("download", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", http_mirror.url)
    assert result.exit_code == 0, result.output
    assert f"mnist: ready in {tmp_path / 'd' / 'mnist'}" in result.output
    assert "train     60 images" in result.output


def test_download_failure_is_a_data_error(fake_mnist, closed_port_url, tmp_path):
    result = run("download", "mnist", "--data-dir", str(tmp_path / "d"), "--mirror", closed_port_url)
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)  # cnnlab's main() prints it as one line, exit code 2
    assert "train-images-idx3-ubyte.gz" in str(result.exception)


def test_augment_grid_writes_a_png(fake_mnist, tmp_path):
    out = tmp_path / "grid.png"
    result = run("augment-grid", str(out), "--data-dir", str(fake_mnist.data_dir), "--count", "3",
                 "--copies", "2", "--elastic-alpha", "10")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == ((3 * 29 + 1) * 3, (3 * 29 + 1) * 3)
