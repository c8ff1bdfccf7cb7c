"""Pixels to network inputs: the one place where ``x = (images · scale − mean) / std`` is written.

A model file stores how its inputs were made (``info["preprocessing"]``, by default
:data:`MNIST_PREPROCESSING`: ``scale`` 1/255, ``mean`` 0, ``std`` 1, so pixels in [0, 1]).
Training, evaluation, batches, augmentation, the recognizer, the figures and the benchmarks all call
:func:`normalize` with that description, so what a model sees at training time is what it sees later.
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.errors import ConfigError, ShapeError


def per_channel(value, channels: int, what: str, ndim: int = 4) -> np.ndarray | None:
    """A scalar or one value per channel -> float32 ``(1, C, 1, 1)`` (for ``ndim`` 4) that broadcasts
    against a batch; None stays None."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be one number or {channels} (one per channel), got {value!r}") from None
    if arr.size not in (1, channels):
        raise ConfigError(f"{what} must be one number or {channels} (one per channel), got {arr.size}")
    if what == "std" and not (arr > 0).all():
        raise ConfigError(f"std must be > 0, got {value!r}")
    return np.broadcast_to(arr, (channels,)).reshape(1, channels, *([1] * (ndim - 2))).copy()


def _is_identity(value, neutral: float) -> bool:
    """True when subtracting / dividing by ``value`` would change nothing (then the pass is skipped)."""
    try:
        return value is None or (np.ndim(value) == 0 and float(value) == neutral)
    except (TypeError, ValueError):  # not a number: per_channel says so
        return False


#: How MNIST pixels are turned into network inputs (the default); stored with every model trained on it.
MNIST_PREPROCESSING = {"scale": 1 / 255, "mean": 0.0, "std": 1.0, "polarity": "light-on-dark",
                       "size": [28, 28], "channels": 1}


def normalize(images: np.ndarray, preprocessing: dict | None = None, input_shape=None) -> np.ndarray:
    """Images ``(N, C, H, W)`` -> float32 network inputs ``(N, *input_shape)`` (default: the same shape).

    uint8 images are multiplied by ``scale``; float images are taken to be scaled already (pixels in
    [0, 1] after an augmentation, a prepared picture). Then ``(x − mean) / std``, where ``mean`` and
    ``std`` are one number or one per channel. Keys left out (or ``None``) take the values of
    :data:`MNIST_PREPROCESSING`; other keys (``polarity``, ``size``...) are ignored. A mean of
    0 and a std of 1 cost no pass over the data. The caller's array is never modified. An MLP built for
    ``input_shape=(784,)`` gets its images flattened.
    """
    pre = {**MNIST_PREPROCESSING, **{k: v for k, v in (preprocessing or {}).items() if v is not None}}
    images = np.asarray(images)
    if images.dtype == np.uint8:
        x = np.multiply(images, np.float32(pre["scale"]), dtype=np.float32)  # one pass: convert and scale
        owned = True
    else:
        x = images.astype(np.float32, copy=False)
        owned = x is not images
    mean, std = pre["mean"], pre["std"]
    if not _is_identity(mean, 0.0):
        x = np.subtract(x, per_channel(mean, x.shape[1], "mean", x.ndim), out=x if owned else None)
        owned = True
    if not _is_identity(std, 1.0):
        x = np.divide(x, per_channel(std, x.shape[1], "std", x.ndim), out=x if owned else None)
    return x if input_shape is None else to_shape(x, input_shape)


def to_shape(x: np.ndarray, input_shape) -> np.ndarray:
    """``(N, ...)`` -> ``(N, *input_shape)`` when the sizes agree (flattening for an MLP)."""
    if tuple(x.shape[1:]) != tuple(input_shape):
        if math.prod(x.shape[1:]) != math.prod(input_shape):
            raise ShapeError(f"the data has samples of shape {tuple(x.shape[1:])}, the model expects "
                             f"{tuple(input_shape)}")
        x = x.reshape(len(x), *input_shape)
    return x
