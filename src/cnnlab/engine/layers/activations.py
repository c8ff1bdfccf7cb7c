"""Activation functions as layers: elementwise non-linearities (and Softmax, over the last axis).

Each layer keeps the shape of its input and computes its own derivative. In training mode it caches the
one thing its backward pass needs — usually its *output*, because the derivatives of sigmoid, tanh and
softmax are cheapest written in terms of it — and in inference mode it caches nothing.

| layer       | f(x)                                  | f'(x), as backward computes it                 |
|-------------|---------------------------------------|------------------------------------------------|
| ReLU        | max(x, 0)                             | 1 if x > 0 else 0                              |
| LeakyReLU   | x if x > 0 else αx                    | 1 if x > 0 else α                              |
| ELU         | x if x > 0 else α(eˣ − 1)             | 1 if x > 0 else f(x) + α                       |
| Sigmoid     | 1 / (1 + e⁻ˣ)                         | s(1 − s)                                       |
| Tanh        | tanh x                                | 1 − t²                                         |
| Softmax     | eˣⁱ / Σⱼ eˣʲ (last axis)             | Jacobian-vector product s ⊙ (g − Σ g ⊙ s)      |

:func:`sigmoid` and :func:`softmax` are also used by the losses, for their fused forms.
"""

from __future__ import annotations

from ..backend import array_module
from ..errors import ConfigError
from .base import Layer


def sigmoid(x):
    """Logistic function, stable for large |x|: ``e⁻ˣ`` is only ever computed for x ≥ 0 (no overflow)."""
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softmax(x, axis: int = -1):
    """Softmax over ``axis``; subtracting the maximum first keeps every exponent ≤ 0 (no overflow)."""
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


class _Activation(Layer):
    """Shared plumbing: shape check, training-only cache, and a clear error on a misplaced backward."""

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._cache = None

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        y, cache = self._forward(x)
        if training or keep_cache:
            self._cache = cache
        return y

    def backward(self, grad_out):
        return self._backward(grad_out, self.cached(self._cache))

    # Subclasses: _forward(x) -> (y, what backward needs); _backward(grad_out, cache) -> grad_in.
    def _forward(self, x):
        raise NotImplementedError

    def _backward(self, grad_out, cache):
        raise NotImplementedError


class _AlphaActivation(_Activation):
    """An activation with one parameter ``alpha`` >= 0 (LeakyReLU's slope, ELU's saturation)."""

    default_alpha = 1.0

    def __init__(self, alpha: float | None = None, name: str | None = None):
        super().__init__(name)
        alpha = self.default_alpha if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ConfigError(f"{self.kind}: alpha must be a non-negative number, received {alpha!r}")
        self.alpha = float(alpha)

    def get_config(self) -> dict:
        return {"alpha": self.alpha}


class ReLU(_Activation):
    """``max(x, 0)``; caches the boolean mask ``x > 0`` (1 byte per element)."""

    # Arithmetic (maximum, multiply by the mask) rather than ``where``: the same values, several times
    # faster on large float32 batches (NumPy's ``where`` with a scalar runs a slow generic loop).
    def _forward(self, x):
        xp = array_module(x)
        return xp.maximum(x, x.dtype.type(0)), x > 0

    def _backward(self, grad_out, positive):
        return grad_out * positive


class LeakyReLU(_AlphaActivation):
    """``x if x > 0 else alpha * x``: a small slope for negative inputs, so no unit ever stops learning."""

    default_alpha = 0.01

    def _forward(self, x):
        xp = array_module(x)
        zero = x.dtype.type(0)
        # max(x, 0) + alpha * min(x, 0): one of the two terms is exactly 0, so the result is exact.
        y = xp.minimum(x, zero)
        y *= x.dtype.type(self.alpha)
        y += xp.maximum(x, zero)
        return y, x > 0

    def _backward(self, grad_out, positive):
        # The local slope, exactly 1 or alpha: alpha where not positive, then + 1 where positive.
        slope = (~positive) * grad_out.dtype.type(self.alpha)
        slope += positive
        slope *= grad_out
        return slope


class ELU(_AlphaActivation):
    """``x if x > 0 else alpha * (exp(x) - 1)``: smooth, with negative outputs down to −alpha."""

    default_alpha = 1.0

    def _forward(self, x):
        xp = array_module(x)
        positive = x > 0
        # expm1 is accurate near 0; min(x, 0) keeps exp from overflowing on the branch where() discards.
        y = xp.where(positive, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        return y, (positive, y)

    def _backward(self, grad_out, cache):
        xp = array_module(grad_out)
        positive, y = cache
        return xp.where(positive, grad_out, grad_out * (y + self.alpha))  # α eˣ = f(x) + α for x ≤ 0


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))`` (computed stably); caches its output ``s``."""

    def _forward(self, x):
        s = sigmoid(x)
        return s, s

    def _backward(self, grad_out, s):
        local = s - s * s  # s(1 − s)
        local *= grad_out
        return local


class Tanh(_Activation):
    """``tanh(x)``; caches its output ``t``."""

    def _forward(self, x):
        t = array_module(x).tanh(x)
        return t, t

    def _backward(self, grad_out, t):
        local = t * t  # 1 − t², computed in place on one temporary
        array_module(t).subtract(t.dtype.type(1), local, out=local)
        local *= grad_out
        return local


class Softmax(_Activation):
    """Softmax over the last axis: ``(N, K) -> (N, K)``, each row positive and summing to 1.

    Its Jacobian is ``diag(s) − s sᵀ`` per row, so the backward pass (Jacobian-vector product) is
    ``s ⊙ (g − Σ g ⊙ s)`` — no K×K matrix is ever formed. With cross-entropy on top, the model uses the
    loss's fused gradient ``p − y`` instead (see :mod:`cnnlab.engine.losses`).
    """

    def _forward(self, x):
        s = softmax(x, axis=-1)
        return s, s

    def _backward(self, grad_out, s):
        return s * (grad_out - (grad_out * s).sum(axis=-1, keepdims=True))
