"""Model files: weights in safetensors, the architecture as JSON in its metadata.

A ``.safetensors`` file is a JSON header followed by raw little-endian arrays: loading it executes no
code (unlike pickle), so a model file from a stranger is safe to open. We store

* every parameter and buffer under its dotted name (``layers.0.W``), float32;
* ``metadata["cnnlab"]``: JSON with the format version, the architecture (``Sequential.get_config()``),
  the preprocessing the model expects (input shape, pixel scaling, mean/std, polarity), the class names,
  and anything else the caller adds (training config, test accuracy).

Loading is strict: a missing or unexpected tensor, or a shape that differs from the architecture, is an
error that names the tensor.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from . import atomic
from .backend import to_numpy
from .errors import CnnlabError, ModelFileError
from .model import Sequential

FORMAT_VERSION = 1
BUNDLED_MODEL = "lenet5-mnist.safetensors"

#: How MNIST pixels are turned into network inputs; stored with every model trained on it.
MNIST_PREPROCESSING = {"scale": 1 / 255, "mean": 0.0, "std": 1.0, "polarity": "light-on-dark",
                       "size": [28, 28], "channels": 1}


def save_model(model: Sequential, path: str | os.PathLike, *, class_names=None, preprocessing=None,
               extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` atomically; returns the path."""
    from safetensors.numpy import save

    path = Path(path)
    tensors = {name: np.ascontiguousarray(to_numpy(a)) for name, a in model.state_dict().items()}
    info = {
        "format_version": FORMAT_VERSION,
        "architecture": model.get_config(),
        "preprocessing": preprocessing or MNIST_PREPROCESSING,
        "class_names": list(class_names) if class_names is not None else [str(i) for i in range(model.output_shape[-1])],
        "extra": extra or {},
    }
    atomic.write_bytes(path, save(tensors, metadata={"cnnlab": json.dumps(info)}))
    return path


def read_model_info(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file, without loading the weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise ModelFileError(f"{path}: not a readable safetensors model file ({exc})") from None
    if "cnnlab" not in metadata:
        raise ModelFileError(f"{path}: a safetensors file, but without cnnlab metadata (no architecture)")
    try:
        info = json.loads(metadata["cnnlab"])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: cnnlab metadata is not valid JSON ({exc})") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {info.get('format_version')!r}, "
                             f"this cnnlab reads version {FORMAT_VERSION}")
    return info


def load_model(path: str | os.PathLike) -> Sequential:
    """Rebuild the model stored in ``path`` (see :func:`save_model`); ``model.info`` holds the metadata."""
    from safetensors.numpy import load_file

    info = read_model_info(path)
    try:
        model = Sequential.from_config(info["architecture"])
        state = load_file(str(path))
        model.load_state_dict(state)
    except CnnlabError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: architecture description is invalid ({exc})") from None
    model.info = info
    return model


def bundled_model_path() -> Path:
    """Path of the LeNet-5 model trained on MNIST that ships inside the package."""
    return Path(str(resources.files("cnnlab") / "models" / BUNDLED_MODEL))


def load_bundled_model() -> Sequential:
    path = bundled_model_path()
    if not path.is_file():
        raise ModelFileError(f"the bundled model is missing from this installation ({path})")
    return load_model(path)
