"""``examples/cnn_from_scratch.ipynb`` runs from top to bottom (executed by nbmake), with MNIST and without.

Each run is a separate ``pytest --nbmake`` process with its own environment: an absolute data folder (the
kernel's working folder is ``examples/``, where a relative ``CNNLAB_DATA`` would point elsewhere), and
the user cache, torchvision and Keras folders in a temporary folder. A cell that raises fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

pytest.importorskip("nbmake", reason="nbmake (in the 'test' extra) runs the notebook")

NOTEBOOK = PROJECT_ROOT / "examples" / "cnn_from_scratch.ipynb"
LIMIT_S = 120  # the notebook promises well under a minute on two cores; CI allows two


def run_notebook(tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CNNLAB_DATA": str(data_dir), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "CNNLAB_TORCHVISION_ROOT": "", "KERAS_HOME": str(tmp_path / "keras"), "MPLBACKEND": "agg"}
    env.pop("CNNLAB_MIRROR", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", f"--nbmake-timeout={LIMIT_S}", "-p", "no:cacheprovider",
         "-q", str(NOTEBOOK)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LIMIT_S + 60)


def test_notebook_runs_without_the_dataset(tmp_path):
    done = run_notebook(tmp_path, tmp_path / "no-data")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    assert not (tmp_path / "no-data").exists()  # offline: nothing downloaded, nothing created


def test_notebook_runs_on_real_mnist(tmp_path, real_data):
    root = real_data("mnist")  # skips, or fails under CNNLAB_REQUIRE_DATA=1, when MNIST is not there
    done = run_notebook(tmp_path, root.resolve())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
