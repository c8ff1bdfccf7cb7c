"""The worst hostile files, each read in a subprocess whose address space is capped at 1.5 GB
(``resource.setrlimit(RLIMIT_AS)``): huge declared sizes and 2 GiB decompression bombs must be refused
with a CnnlabError (one line, exit code 2 through the CLI), never a MemoryError — nothing may be allocated
because a file asked for it, and the user's file stays where it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hostile_files as hostile

resource = pytest.importorskip("resource", reason="RLIMIT_AS needs the POSIX resource module")

LIMIT = 1_500_000_000  # bytes of address space for the whole interpreter, NumPy included
SRC = Path(__file__).resolve().parents[2] / "src"

RUNNER = r"""
import resource, sys
from pathlib import Path
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from cnnlab.engine.errors import CnnlabError

def peak():  # kilobytes on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

kind, args = sys.argv[2], sys.argv[3:]
try:
    if kind == "idx":
        from cnnlab.data.idx import read_idx
        read_idx(args[0])
    elif kind == "cifar-tar":
        from cnnlab.data.cifar import extract_batches
        extract_batches(Path(args[0]), Path(args[1]), ("data_batch_1.bin",))
    elif kind == "model":
        from cnnlab.io import load_model
        load_model(args[0])
    elif kind == "cli":
        from cnnlab.cli import main
        code = main(args)
        print(f"exit {code}; peak {peak()} MB")
        sys.exit(code)
except CnnlabError as exc:
    print(f"refused: {exc}; peak {peak()} MB")
    sys.exit(3)
print(f"accepted; peak {peak()} MB")
"""


def run_capped(kind: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           # one BLAS thread: each thread reserves address space of its own at import
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CNNLAB_MIRROR": "http://127.0.0.1:9/", "CNNLAB_THREADS": "1"}
    env.pop("CNNLAB_DATA", None)
    return subprocess.run([sys.executable, "-c", RUNNER, str(LIMIT), kind, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def assert_refused(result, *words, code=3):
    text = result.stdout + result.stderr
    assert result.returncode == code, text
    assert "MemoryError" not in text and "Traceback" not in text, text
    for word in words:
        assert word in text, text


IDX_BOMBS = {
    "gzip bomb after a valid MNIST header": (hostile.idx_gz_bomb_valid_header, "inflates to more than"),
    "gzip bomb without an IDX header": (hostile.idx_gz_bomb_bad_header, "unknown IDX dtype code 0x00"),
    "gzip bomb after a header announcing 784 GB": (hostile.idx_gz_bomb_huge_header, "header announces dims"),
    "raw header announcing 25 TB of float64": (hostile.idx_raw_huge_dims, "truncated payload"),
}


@pytest.mark.parametrize("name", IDX_BOMBS)
def test_idx_files_that_ask_for_too_much_are_refused_within_the_cap(tmp_path, name):
    build, words = IDX_BOMBS[name]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(build())
    size = path.stat().st_size
    assert_refused(run_capped("idx", path), words)
    assert path.stat().st_size == size  # the user's file is left alone


def test_data_info_on_a_bombed_data_folder_stays_bounded_and_keeps_the_file(tmp_path):
    import gzip

    import numpy as np

    from cnnlab.data.idx import encode_idx

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name, array in (("train-labels-idx1-ubyte", np.zeros(60000, np.uint8)),
                        ("t10k-images-idx3-ubyte", np.zeros((10000, 28, 28), np.uint8)),
                        ("t10k-labels-idx1-ubyte", np.zeros(10000, np.uint8))):
        (folder / f"{name}.gz").write_bytes(gzip.compress(encode_idx(array), compresslevel=1, mtime=0))
    bomb = folder / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(hostile.idx_gz_bomb_valid_header())
    result = run_capped("cli", "data", "info", "--data-dir", tmp_path / "data")
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "MemoryError" not in text and "Traceback" not in text, text
    assert "verified" not in text.replace("not verified", "")
    assert bomb.is_file()


def test_a_cifar_archive_member_of_2_gib_is_refused_before_it_is_read(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(hostile.cifar_tar_bomb())
    assert_refused(run_capped("cifar-tar", archive, tmp_path / "out"), "data_batch_1.bin")
    assert not (tmp_path / "out" / "cifar-10-batches-bin" / "data_batch_1.bin").exists()


MODEL_BOMBS = {
    "Dense of 10^9 units": (hostile.dense_of(10**9), "per sample is more than"),
    "Dense of 10^6 units": (hostile.dense_of(10**6), "the architecture needs (4, 1000000)"),
    "JSON nested 100,000 deep": (hostile.nested(100_000), "nested too deeply"),
}


@pytest.mark.parametrize("name", MODEL_BOMBS)
def test_model_files_that_ask_for_too_much_are_refused_within_the_cap(tmp_path, name):
    edit, words = MODEL_BOMBS[name]
    path = tmp_path / "m.safetensors"
    path.write_bytes(hostile.model_file(edit))
    assert_refused(run_capped("model", path), words)
    for command in (["predict", "--example", "--model", path], ["evaluate", path, "--json"]):
        assert_refused(run_capped("cli", *command), "error:", code=2)


def test_summary_of_a_billion_unit_mlp_is_refused_within_the_cap():
    assert_refused(run_capped("cli", "summary", "--arch", "mlp:784-1000000000-10"), "error:", code=2)


def test_a_valid_file_is_still_read_under_the_cap(tmp_path):
    """The cap itself is not what refuses: an honest MNIST-sized file loads within it."""
    import gzip

    import numpy as np

    from cnnlab.data.idx import encode_idx

    path = tmp_path / "ok.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros((60000, 28, 28), np.uint8)), compresslevel=1, mtime=0))
    result = run_capped("idx", path)
    assert result.returncode == 0 and "accepted" in result.stdout, result.stdout + result.stderr
