"""Moving a model between the CPU (NumPy) and a GPU (CuPy).

The engine never asks which device it runs on: every layer computes with ``xp = array_module(x)``, the
namespace that owns the arrays it was given. So running on a GPU only means *putting the arrays there*:
the parameters, their gradients, the buffers (BatchNorm's running statistics), whatever a layer cached
from its last training batch, and the optimizer's per-parameter state (velocity, Adam moments). Batches
are moved one at a time with :func:`to_device_array`; results come back with
:func:`cnnlab.engine.backend.to_numpy`.

::

    from cnnlab.engine.device import to_device, to_device_array
    model = to_device(build("lenet5"), "gpu")          # ConfigError without CuPy or a usable GPU
    out = model.predict_proba(to_device_array(x, "gpu"))
    cnnlab.save_model(to_device(model, "cpu"), "lenet5.safetensors")

Moving is done in place (the same layer objects, new arrays) and returns the model, like PyTorch's
``module.to(device)``.
"""

from __future__ import annotations

import numpy as np

from . import backend
from .backend import get_xp
from .errors import ConfigError

DEVICES = ("cpu", "gpu")


def _check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    return device


def is_device_array(value) -> bool:
    """True for a NumPy or a CuPy array (the things that move)."""
    cupy = backend._cupy
    return isinstance(value, np.ndarray) or (cupy is not None and isinstance(value, cupy.ndarray))


def to_device_array(array, device: str):
    """``array`` on ``device``: a NumPy array for ``"cpu"``, a CuPy array for ``"gpu"`` (no copy if already there)."""
    xp = get_xp(_check_device(device))
    if xp is np:
        return backend.to_numpy(array)
    return xp.asarray(array)


def _move(value, device: str):
    """Arrays (also inside dicts, lists and tuples, one level deep at a time) moved to ``device``."""
    if is_device_array(value):
        return to_device_array(value, device)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(is_device_array(v) for v in value):
        return type(value)(_move(v, device) for v in value)
    return value


def layer_to_device(layer, device: str):
    """Move every array a layer holds: ``params``, ``grads``, ``buffers`` and its cached arrays.

    We walk the layer's attributes rather than a fixed list, so a cache added to a layer later (a work
    buffer, a dropout mask) moves too instead of mixing devices in the next backward pass.
    """
    get_xp(_check_device(device))  # fail before touching anything
    for attr, value in list(vars(layer).items()):
        moved = _move(value, device)
        if moved is not value:
            setattr(layer, attr, moved)
    return layer


def to_device(model, device: str, optimizer=None):
    """Move ``model`` (a :class:`~cnnlab.engine.model.Sequential`) and, if given, ``optimizer``'s state to ``device``.

    ``device`` is ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy). Raises :class:`ConfigError` naming what is missing
    when CuPy is not installed or no CUDA GPU is usable. Returns the model (moved in place).
    """
    get_xp(_check_device(device))
    for layer in model.layers:
        layer_to_device(layer, device)
    if optimizer is not None:
        optimizer_to_device(optimizer, device)
    return model


def optimizer_to_device(optimizer, device: str):
    """Move an optimizer's per-parameter state arrays (velocity, moments) to ``device``; scalars stay."""
    get_xp(_check_device(device))
    optimizer.state = {name: _move(slot, device) for name, slot in optimizer.state.items()}
    return optimizer


def model_device(model) -> str:
    """``"gpu"`` when the model's parameters are CuPy arrays, else ``"cpu"``."""
    arrays = list(model.state_dict().values())
    return "gpu" if arrays and backend.array_module(*arrays) is not np else "cpu"


def available_devices() -> list[str]:
    """The devices this machine can run on: always ``"cpu"``, plus ``"gpu"`` with CuPy and a CUDA GPU."""
    devices = ["cpu"]
    try:
        get_xp("gpu")
    except ConfigError:
        return devices
    return devices + ["gpu"]


def synchronize(device: str = "cpu") -> None:
    """Wait until queued GPU work has finished (a no-op on the CPU). Needed before reading a timer:
    CuPy launches kernels asynchronously, so without it a timer measures only the launch."""
    if _check_device(device) == "gpu":
        get_xp("gpu").cuda.get_current_stream().synchronize()
