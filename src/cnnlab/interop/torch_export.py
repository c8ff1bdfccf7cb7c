"""PyTorch ``.pt`` files: write a cnnlab model for PyTorch users, read PyTorch weights back into cnnlab.

An exported file is ``torch.save`` of a plain dict, so ``torch.load(path, weights_only=True)`` opens it
without unpickling any code::

    {
        "format": "cnnlab-torch", "format_version": 1,
        "state_dict":  {"0.weight": tensor, "0.bias": tensor, ...},   # nn.Sequential names and layouts
        "modules":     [{"type": "Conv2d", "kwargs": {...}}, ...],    # nn.<type>(**kwargs), in order
        "code":        "nn.Sequential(\\n    nn.Conv2d(...),\\n ...)",  # the same, as Python source
        "preprocessing": {...}, "class_names": [...],                  # how pixels become the input
        "cnnlab_architecture": {...},                                 # Sequential.get_config()
    }

A PyTorch user rebuilds it without cnnlab::

    import torch
    from torch import nn
    bundle = torch.load("model.pt", weights_only=True)
    net = nn.Sequential(*[getattr(nn, m["type"])(**m["kwargs"]) for m in bundle["modules"]])
    net.load_state_dict(bundle["state_dict"])
    net.eval()          # dropout off, BatchNorm's running statistics: the outputs of cnnlab's model

The last module is the model's ``Softmax`` (outputs are probabilities, as cnnlab's); ``net[:-1]`` gives the
logits that ``nn.CrossEntropyLoss`` wants. Reading accepts such a bundle or a plain state dict saved with
``torch.save(net.state_dict(), path)``; it always loads with ``weights_only=True`` (never unpickles code).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from .. import atomic
from ..engine.errors import ModelFileError
from .torch_bridge import build_sequential, require_torch, torch_code, torch_modules, torch_state_dict

FORMAT = "cnnlab-torch"
FORMAT_VERSION = 1


def torch_bundle(model) -> dict:
    """The dict an exported ``.pt`` file holds (see the module docstring); float32 tensors."""
    torch = require_torch()
    from .export_info import export_info  # the same description (preprocessing, class names) as ONNX

    modules = torch_modules(model, drop_final_softmax=False)
    # Start from the rebuilt module's own state dict, so the buffers PyTorch adds (num_batches_tracked)
    # are there and a strict load_state_dict of the file succeeds.
    state = build_sequential(modules).state_dict()
    for name, value in torch_state_dict(model, modules).items():
        state[name] = torch.tensor(value, dtype=torch.float32)
    info = export_info(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": state,
        "modules": [spec.describe() for spec in modules],
        "code": torch_code(modules),
        "preprocessing": info["preprocessing"],
        "class_names": info["class_names"],
        "cnnlab_architecture": info["architecture"],
    }


def export_torch(model, path: str | os.PathLike) -> Path:
    """Write :func:`torch_bundle` of ``model`` to ``path`` atomically; returns the path."""
    torch = require_torch()
    bundle = torch_bundle(model)
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        torch.save(bundle, tmp)
    return path


def read_torch_file(path: str | os.PathLike) -> tuple[Mapping, dict]:
    """``(state_dict, extras)`` from a ``.pt`` file: a cnnlab bundle or a plain state dict.

    ``extras`` holds the bundle's ``preprocessing`` and ``class_names`` when present. Loads with
    ``weights_only=True``; a file that needs anything else to unpickle is refused with
    :class:`ModelFileError`, as is one that is not a PyTorch file or holds no state dict.
    """
    torch = require_torch()
    import pickle

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"PyTorch file not found: {path}")
    if not _looks_like_torch_file(path):
        raise ModelFileError(f"{path}: not a PyTorch file (torch.save writes a zip archive, older versions a "
                             "pickle); expected a .pt file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{path}: refused: {_why_refused(str(exc))}; such a file is never unpickled here "
                             "(torch.load with weights_only=True)") from None
    except Exception as exc:  # a truncated or corrupt archive: torch raises several types
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "no detail"
        raise ModelFileError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {detail})") from None
    extras = {}
    if isinstance(content, Mapping) and isinstance(content.get("state_dict"), Mapping):
        for key in ("preprocessing", "class_names", "cnnlab_architecture"):
            if key in content:
                extras[key] = content[key]
        content = content["state_dict"]
    if not isinstance(content, Mapping) or not content:
        raise ModelFileError(f"{path}: holds {type(content).__name__}, not a state dict (names -> tensors); "
                             "save one with torch.save(model.state_dict(), path)")
    return content, extras


def _looks_like_torch_file(path: Path) -> bool:
    """True for torch.save's zip archive or a legacy pickle (protocol 2 or later starts with 0x80)."""
    import zipfile

    with open(path, "rb") as fh:
        first = fh.read(1)
    return first == b"\x80" or zipfile.is_zipfile(path)


def _why_refused(message: str) -> str:
    """The useful part of weights_only's long UnpicklingError: which Python object the file needs."""
    import re

    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return f"it holds a Python object of class {found.group(1)}, not only tensors and plain containers"
    found = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    detail = found.group(1).strip() if found else "unknown"
    return f"its pickle uses something beyond tensors and plain containers ({detail[:120]})"


def check_extras(extras: dict, model, path) -> tuple[dict | None, list[str] | None]:
    """The bundle's preprocessing and class names when they are well formed for ``model``, else an error."""
    preprocessing, class_names = extras.get("preprocessing"), extras.get("class_names")
    if preprocessing is not None and not isinstance(preprocessing, Mapping):
        raise ModelFileError(f"{path}: 'preprocessing' is {type(preprocessing).__name__}; expected a dict")
    if class_names is not None:
        classes = model.output_shape[-1]
        if (not isinstance(class_names, (list, tuple)) or len(class_names) != classes
                or not all(isinstance(c, str) for c in class_names)):
            raise ModelFileError(f"{path}: 'class_names' must be {classes} strings for this model")
        class_names = list(class_names)
    return (dict(preprocessing) if preprocessing is not None else None), class_names


#: Constructor options that do not change what a trained layer computes at inference.
_TRAINING_ONLY = ("kernel_initializer", "bias_initializer", "seed", "momentum")


def _inference_form(architecture) -> list | None:
    """``[(type, options that change the outputs), ...]`` of a ``Sequential.get_config()``, or None."""
    if not isinstance(architecture, Mapping) or not isinstance(architecture.get("layers"), list):
        return None
    form = [list(architecture.get("input_shape") or [])]
    for spec in architecture["layers"]:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("config", {}), Mapping):
            return None
        options = {k: v for k, v in spec.get("config", {}).items() if k not in _TRAINING_ONLY}
        form.append((spec.get("type"), json.dumps(options, sort_keys=True)))
    return form


def check_same_architecture(extras: dict, model, path) -> None:
    """Refuse a bundle exported from a different architecture than ``model`` (say ReLU where ``--arch``
    builds tanh): the weights would fit, the outputs would not. Plain state dicts carry no architecture."""
    if "cnnlab_architecture" not in extras:
        return
    stored, wanted = _inference_form(extras["cnnlab_architecture"]), _inference_form(model.get_config())
    if stored is None:
        raise ModelFileError(f"{path}: 'cnnlab_architecture' is not a cnnlab architecture description")
    if stored != wanted:
        differ = next((i for i, (a, b) in enumerate(zip(stored, wanted)) if a != b), min(len(stored), len(wanted)))
        if differ == 0:
            where = f"input shape {stored[0]} in the file, {wanted[0]} here"
        elif differ >= len(stored) or differ >= len(wanted):
            where = f"{len(stored) - 1} layers in the file, {len(wanted) - 1} here"
        else:
            (file_type, file_options), (our_type, our_options) = stored[differ], wanted[differ]
            where = (f"layer {differ - 1} is {file_type} {file_options} in the file, {our_type} {our_options} here"
                     if file_type == our_type else f"layer {differ - 1} is {file_type} in the file, {our_type} here")
        raise ModelFileError(f"{path} was exported from another architecture than {model.name} ({where}); give "
                             "the --arch, --input-shape and options it was made with")
