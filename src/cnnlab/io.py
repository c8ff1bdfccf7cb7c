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
from .engine.backend import to_numpy
from .engine.errors import CnnlabError, ModelFileError
from .data.normalize import MNIST_PREPROCESSING
from .engine.model import Sequential

FORMAT_VERSION = 1
BUNDLED_MODEL = "cnn-bn-mnist.safetensors"
#: The models that ship inside the package, by the name ``--model`` takes.
#: The models that ship with the package, by the name ``--model`` takes: the digit recognizer (cnn-bn with a
#: "not a digit" class, docs/bundled-model.md), the small LeNet-5 that the course material teaches, and
#: vgg-mini for Fashion-MNIST.
BUNDLED_MODELS = {"digits": BUNDLED_MODEL, "lenet5": "lenet5-mnist.safetensors",
                  "fashion": "fashion-vgg-mini.safetensors"}

#: Limits a model file must stay within before anything is built from it: a file cannot make cnnlab
#: allocate what it asks for (the parameters must match tensors present in the file, and Sequential caps
#: their count). Far above every preset (vgg-mini: 14 layers, 10,816 values per sample at its widest).
MAX_LAYERS = 1_000
MAX_VALUES_PER_SAMPLE = 1 << 24   # the widest activation of one sample (16.7 M values, 64 MB in float32)
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}



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
    except RecursionError:
        raise ModelFileError(f"{path}: cnnlab metadata is nested too deeply to be a model description") from None
    if not isinstance(info, dict):
        raise ModelFileError(f"{path}: cnnlab metadata is {type(info).__name__}; expected a JSON object")
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {info.get('format_version')!r}, "
                             f"this cnnlab reads version {FORMAT_VERSION}")
    return info


def _stored_tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``name -> (dtype, shape)`` of every tensor in a safetensors file, from its header alone."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        return {name: (fh.get_slice(name).get_dtype(), tuple(fh.get_slice(name).get_shape())) for name in fh.keys()}


def check_architecture(architecture, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse an architecture that does not match the stored tensors, or is beyond the limits, *before* any
    array is allocated: the layers' shapes are walked (``compute_output_shape``, ``state_shapes``) with
    nothing built. Raises :class:`ModelFileError` naming the layer or tensor."""
    from .engine.layers import LAYER_TYPES

    if not isinstance(architecture, dict) or not isinstance(architecture.get("layers"), list):
        raise ModelFileError("architecture description is invalid (expected an object with a 'layers' list)")
    specs = architecture["layers"]
    if not 1 <= len(specs) <= MAX_LAYERS:
        raise ModelFileError(f"architecture has {len(specs):,} layers; expected 1 to {MAX_LAYERS:,}")
    shape = tuple(architecture.get("input_shape") or ())
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ModelFileError(f"architecture input_shape {list(shape)!r} is not a list of positive integers")
    expected: dict[str, tuple[int, ...]] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or spec.get("type") not in LAYER_TYPES or not isinstance(spec.get("config", {}), dict):
            raise ModelFileError(f"layer {index}: unknown or malformed layer {str(spec)[:80]!r}; "
                                 f"expected one of {sorted(LAYER_TYPES)}")
        if int(np.prod(shape, dtype=np.float64)) > MAX_VALUES_PER_SAMPLE:
            raise ModelFileError(f"layer {index}: input of {shape} per sample is more than "
                                 f"{MAX_VALUES_PER_SAMPLE:,} values")
        try:
            layer = LAYER_TYPES[spec["type"]](**spec.get("config", {}))
        except TypeError:
            raise ModelFileError(f"layer {index} ({spec['type']}): options {sorted(spec.get('config', {}))} are "
                                 "not the ones this layer takes") from None
        for key, tensor_shape in layer.state_shapes(shape).items():
            expected[f"layers.{index}.{key}"] = tensor_shape
        shape = tuple(layer.compute_output_shape(shape))
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"tensors do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, want in expected.items():
        dtype, have = tensors[name]
        if dtype not in FLOAT_DTYPES:
            raise ModelFileError(f"tensor {name} has dtype {dtype}; expected floating point ({', '.join(sorted(FLOAT_DTYPES))})")
        if tuple(have) != tuple(want):
            raise ModelFileError(f"tensor {name} has shape {tuple(have)}; the architecture needs {tuple(want)}")


def load_model(path: str | os.PathLike) -> Sequential:
    """Rebuild the model stored in ``path`` (see :func:`save_model`); ``model.info`` holds the metadata.

    The architecture is checked against the tensors actually in the file before anything is built
    (:func:`check_architecture`), and weights that are NaN or infinite are refused.
    """
    from safetensors.numpy import load_file

    info = read_model_info(path)
    try:
        check_architecture(info.get("architecture"), _stored_tensors(Path(path)))
        model = Sequential.from_config(info["architecture"])
        state = load_file(str(path))
        for name, value in state.items():
            if not np.isfinite(value).all():
                raise ModelFileError(f"tensor {name} holds NaN or infinite values; the model cannot be used")
        model.load_state_dict(state)
    except CnnlabError as exc:
        raise ModelFileError(f"{path}: {str(exc).removeprefix(f'{path}: ')}") from None
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{path}: architecture description is invalid ({exc})") from None
    model.info = info
    return model


def bundled_model_path(name: str = "digits") -> Path:
    """Path of a model that ships inside the package: ``"digits"`` (cnn-bn trained on MNIST and non-digit
    marks, the default), ``"lenet5"`` (LeNet-5 on MNIST, the teaching model) or ``"fashion"`` (vgg-mini
    trained on Fashion-MNIST)."""
    if name not in BUNDLED_MODELS:
        raise ModelFileError(f"no bundled model called {name!r}; expected one of: {', '.join(BUNDLED_MODELS)}")
    return Path(str(resources.files("cnnlab") / "models" / BUNDLED_MODELS[name]))


def load_bundled_model(name: str = "digits") -> Sequential:
    path = bundled_model_path(name)
    if not path.is_file():
        raise ModelFileError(f"the bundled model is missing from this installation ({path})")
    return load_model(path)
