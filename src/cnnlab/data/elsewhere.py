"""Copies that torchvision or Keras already downloaded: used instead of downloading the dataset again.

Searched after cnnlab's own data folder and the system copies, before any download:

* **torchvision** keeps ``<root>/<Class>/raw/`` with the original IDX files (``.gz`` and/or gunzipped):
  ``MNIST``, ``FashionMNIST``, ``KMNIST``, ``QMNIST``, ``EMNIST``. ``<root>`` is whatever the user passed
  to ``torchvision.datasets.MNIST(root=...)``, so cnnlab looks in: the data folder itself (point
  ``CNNLAB_DATA`` at a torchvision root), each folder of ``$CNNLAB_TORCHVISION_ROOT`` (``os.pathsep``
  separated), else ``./data`` (the ``root="data"`` of PyTorch's tutorials).
* **Keras** keeps ``$KERAS_HOME/datasets/`` (default ``~/.keras/datasets/``): ``mnist.npz`` (four arrays,
  read with ``allow_pickle=False`` and verified against the SHA-256 in Keras' source) and
  ``fashion-mnist/`` (the four original ``.gz`` files).

Files found there are verified like any other copy and never modified: one that fails is an error
naming it (move it away, or point ``--data-dir`` elsewhere), not something cnnlab replaces.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..engine.errors import DataError
from . import verify
from .dataset import Dataset
from .idx import check_pair
from .paths import data_root
from .registry import DatasetSpec

TORCHVISION_ENV = "CNNLAB_TORCHVISION_ROOT"
KERAS_ENV = "KERAS_HOME"

#: Keras' array names in mnist.npz, per split.
_NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


def torchvision_roots(data_dir=None) -> list[Path]:
    """Folders that may be a torchvision ``root``: the data folder, then ``$CNNLAB_TORCHVISION_ROOT`` or ``./data``."""
    env = os.environ.get(TORCHVISION_ENV)
    if env is None:
        extra = [Path("data").absolute()]
    else:  # set, even to "": exactly these folders (the tests set it empty to see none of the machine's)
        extra = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [data_root(data_dir), *extra]


def keras_datasets_dir() -> Path:
    """``$KERAS_HOME/datasets``, else ``~/.keras/datasets`` (where ``keras.utils.get_file`` caches)."""
    home = os.environ.get(KERAS_ENV)
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "datasets"


def foreign_dirs(spec: DatasetSpec, data_dir=None) -> list[Path]:
    """Folders of other libraries that may hold ``spec``'s files under their usual names, best first."""
    dirs = []
    if spec.torchvision_folder:
        dirs += [root / spec.torchvision_folder / "raw" for root in torchvision_roots(data_dir)]
    if spec.keras_folder:
        dirs.append(keras_datasets_dir() / spec.keras_folder)
    return dirs


def keras_npz(spec: DatasetSpec) -> Path | None:
    """Keras' ``.npz`` of ``spec`` when it is there (MNIST: ``~/.keras/datasets/mnist.npz``), else None."""
    if spec.keras_npz is None:
        return None
    path = keras_datasets_dir() / spec.keras_npz[0]
    return path if path.is_file() else None


def read_keras_npz(spec: DatasetSpec, split: str, path: Path, check: bool) -> Dataset:
    """One split of a Keras ``.npz``: ``x_<split>`` uint8 ``(N, 28, 28)`` and ``y_<split>`` ``(N,)``.

    ``allow_pickle=False``: an array of Python objects in the file is refused, never unpickled.
    """
    if check:
        verify.verify_file(path, spec.keras_npz[1])
    images_key, labels_key = _NPZ_KEYS[split]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (images_key, labels_key) if k not in npz.files]
            if missing:
                raise DataError(f"{path}: no array {missing[0]!r}; expected Keras' arrays x_train, y_train, "
                                f"x_test, y_test (found {', '.join(npz.files) or 'none'})")
            images, labels = npz[images_key], npz[labels_key]
    except ValueError as exc:  # among others: "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"{path}: not a plain Keras .npz of arrays ({exc})") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: damaged .npz file ({exc})") from exc
    check_pair(images, labels, len(spec.class_names), f"{path}:{images_key}", f"{path}:{labels_key}")
    if images.shape[1:] != spec.sample_shape[1:]:
        raise DataError(f"{path}:{images_key}: expected images of {spec.sample_shape[1:]}, got {images.shape[1:]}")
    return Dataset(images=np.ascontiguousarray(images[:, None]), labels=labels.astype(np.int64),
                   class_names=spec.class_names, name=spec.name, split=split, source=path, verified=check)
