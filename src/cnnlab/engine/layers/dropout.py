"""Dropout: in training, silence a random fraction of the activations.

*Inverted* dropout: each element is kept with probability ``keep = 1 − rate`` and the kept ones are scaled
by ``1 / keep``, so the expected value of every output equals its input. The network then needs no change
at inference, where Dropout is the identity (Srivastava et al. 2014 scale the weights at test time instead;
the two are equivalent in expectation).

Randomness: a layer built with ``seed=None`` draws its masks from the generator the model passes to
:meth:`build` (so one model seed reproduces a whole run); a layer given a ``seed`` owns its generator.
:meth:`reseed` restarts the generator.

Fixing the mask (for gradient checks and tests): ``layer.freeze_mask(True)`` (or ``layer.fixed_mask =
True``) and the mask drawn by the last training forward pass is reused by every following one of the same
shape; ``freeze_mask(False)`` (the default state) draws a fresh mask on every training forward pass.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, make_rng
from ..errors import ConfigError
from .base import Layer


class Dropout(Layer):
    """Keeps each element with probability ``1 − rate`` and scales it by ``1 / (1 − rate)``; any shape."""

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None):
        super().__init__(name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ConfigError(f"Dropout: rate must be a number in [0, 1), received {rate!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng = make_rng(seed) if seed is not None else None
        self.fixed_mask = False
        self._mask = None  # the scaled mask (0 or 1/keep) of the last training forward pass

    def init_params(self, rng):
        if self.seed is None:
            self.rng = rng  # share the model's generator

    def freeze_mask(self, frozen: bool = True) -> None:
        """Reuse the last training mask (``True``) or draw a fresh one per forward pass (``False``)."""
        self.fixed_mask = bool(frozen)

    def reseed(self, seed) -> None:
        """Restart the mask generator from ``seed`` (an int or a Generator)."""
        self.rng = make_rng(seed)
        self._mask = None

    def get_config(self) -> dict:
        config = {"rate": self.rate, "seed": self.seed}
        return config

    def draw_mask(self, shape, dtype=np.float32, xp=np):
        """The scaled mask (0 or ``1 / keep``) of a training forward pass on an input of ``shape``.

        Draws a fresh one (or, when the mask is fixed, reuses the last one of that shape), keeps it for
        :meth:`backward` and returns it as a ``dtype`` array of module ``xp`` (NumPy or CuPy). This is
        exactly what :meth:`forward` multiplies its input by, so a caller may draw a whole batch's mask
        without running the forward pass.
        """
        shape = tuple(shape)
        if self.fixed_mask and self._mask is not None and tuple(self._mask.shape) == shape:
            return self._mask
        if self.rng is None:  # used without build() and without a seed
            self.rng = make_rng(None)
        keep = 1.0 - self.rate
        kept = self.rng.random(shape, dtype=np.float32) < keep  # drawn on the host, even for CuPy
        dtype = np.dtype(dtype)
        self._mask = xp.asarray(kept, dtype=dtype) * dtype.type(1.0 / keep)
        return self._mask

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        if not training or self.rate == 0:
            if keep_cache:  # inference: dropout is the identity, and so is its backward
                self._mask = x.dtype.type(1)
            return x
        return x * self.draw_mask(x.shape, x.dtype, array_module(x))

    def backward(self, grad_out):
        if self.rate == 0:
            return grad_out
        return grad_out * self.cached(self._mask)
