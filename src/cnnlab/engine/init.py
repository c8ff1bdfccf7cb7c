"""Weight initializers.

Each initializer is a function ``(shape, fan_in, fan_out, rng, dtype) -> ndarray``. ``fan_in`` is the number
of inputs that feed one output unit (``C * kh * kw`` for a convolution, ``n_in`` for a dense layer) and
``fan_out`` the number of outputs one input feeds. Randomness always comes from the ``rng`` passed in, so
a seed reproduces the same weights.

| name       | distribution                         | where it comes from                                   |
|------------|--------------------------------------|-------------------------------------------------------|
| uniform    | U(-0.1, 0.1)                         | the simplest choice                                   |
| large      | N(0, 1)                              | Nielsen ch. 1 ("large" weights: saturated sigmoids)   |
| default    | N(0, 1/n_in)                         | Nielsen ch. 3 (std 1/sqrt(n_in))                      |
| glorot     | U(-a, a), a = sqrt(6/(fan_in+fan_out)) | Glorot & Bengio 2010 (tanh, sigmoid)                |
| he         | N(0, 2/fan_in)                       | He et al. 2015 (ReLU)                                 |
| zeros      | 0                                    | biases                                                |
| constant:v | v everywhere (e.g. ``constant:0.1``) | biases of the from-scratch course network             |
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError


def uniform(shape, fan_in, fan_out, rng, dtype=np.float32):
    return rng.uniform(-0.1, 0.1, size=shape).astype(dtype)


def large(shape, fan_in, fan_out, rng, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def default(shape, fan_in, fan_out, rng, dtype=np.float32):
    return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(dtype)


def glorot(shape, fan_in, fan_out, rng, dtype=np.float32):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he(shape, fan_in, fan_out, rng, dtype=np.float32):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def zeros(shape, fan_in, fan_out, rng, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


INITIALIZERS = {
    "uniform": uniform,
    "large": large,
    "normal": large,
    "default": default,
    "glorot": glorot,
    "xavier": glorot,
    "he": he,
    "kaiming": he,
    "zeros": zeros,
}


def constant(value: float):
    """The initializer that fills every entry with ``value``."""
    def fill(shape, fan_in, fan_out, rng, dtype=np.float32):
        return np.full(shape, value, dtype=dtype)

    return fill


def get_initializer(name: str):
    """Look an initializer up by name (or ``"constant:<number>"``); the error lists the known names."""
    if isinstance(name, str) and name.startswith("constant:"):
        try:
            value = float(name.partition(":")[2])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"initializer {name!r}: expected a finite number after 'constant:', like constant:0.1")
        return constant(value)
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(INITIALIZERS))
        raise ConfigError(f"unknown initializer {name!r}; expected one of: {known}, constant:<number>") from None
