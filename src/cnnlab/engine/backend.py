"""The array namespace the engine computes with.

Every layer writes its maths against ``xp``, the module that owns the arrays it was given: NumPy today,
CuPy on a GPU, with the same code. :func:`array_module` returns it for a given array (the pattern of
``cupy.get_array_module``), so no layer imports NumPy for its arithmetic directly and no global switch is
needed inside the engine.

float32 is the default dtype (fast, what PyTorch uses); float64 stays available for gradient checks.
"""

from __future__ import annotations

import numpy as np

DEFAULT_DTYPE = np.float32

try:  # CuPy is optional: only the GPU backend needs it.
    import cupy as _cupy  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None


def array_module(*arrays):
    """Return the array namespace (``numpy`` or ``cupy``) of the given arrays."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def get_xp(device: str = "cpu"):
    """Namespace for a device name: ``"cpu"`` -> NumPy, ``"gpu"`` -> CuPy (clear error if missing)."""
    if device == "cpu":
        return np
    if device == "gpu":
        from .errors import ConfigError

        if _cupy is None:
            raise ConfigError("device 'gpu' needs CuPy: install it with `pip install cnnlab[gpu]` on a machine with CUDA")
        try:
            _cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # pragma: no cover - depends on the machine
            raise ConfigError(f"device 'gpu' needs a CUDA GPU, but none is usable: {exc}") from exc
        return _cupy
    from .errors import ConfigError

    raise ConfigError(f"unknown device {device!r}; expected 'cpu' or 'gpu'")


def to_numpy(a) -> np.ndarray:
    """Bring an array back to host memory as a NumPy array (no copy when it is already NumPy)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def make_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A NumPy ``Generator`` from a seed (or pass one through). All randomness in cnnlab flows from one."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
