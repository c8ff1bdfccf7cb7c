"""Cost functions: how far the network's output ``a`` is from the target ``y``, averaged over the batch.

Every loss offers ``forward(a, y) -> float`` (the mean over the N samples of the batch) and
``grad(a, y) -> dL/da`` (so each sample's gradient carries the factor 1/N). Outputs are ``(N, K)``; targets
are integer class labels ``(N,)`` or one-hot (or soft) rows ``(N, K)``.

| loss                | per-sample cost                     | fused with | gradient w.r.t. the logits z |
|---------------------|-------------------------------------|------------|------------------------------|
| Quadratic           | ½ ‖a − y‖²                          | —          | —                            |
| BinaryCrossEntropy  | −Σ [y ln a + (1 − y) ln(1 − a)]     | Sigmoid    | (σ(z) − y) / N               |
| SoftmaxCrossEntropy | −Σ y ln a                           | Softmax    | (softmax(z) − y) / N         |

Fusing: a loss with ``fused_activation`` (the class *name* of the final activation layer) also offers
``forward_from_logits(z, y)`` and ``grad_from_logits(z, y)``. The model then stops before that activation
in training and hands the loss the logits. The combined gradient is simply ``a − y`` — the activation's
derivative cancels the loss's denominator (Nielsen ch. 3: no learning slowdown) — and the value is
computed in log-sum-exp form, which never takes the log of 0 however large the logits are.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_module
from .errors import ConfigError, NumericalError, ShapeError
from .layers.activations import sigmoid, softmax


class Loss:
    """Base class: target validation and the NaN/inf check shared by every loss."""

    #: Class name of the activation layer this loss fuses with (``None``: no fused form).
    fused_activation: str | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, output, target) -> float:
        raise NotImplementedError

    def grad(self, output, target):
        raise NotImplementedError

    def value(self, output, target, from_logits: bool = False) -> float:
        """The mean loss of a batch; ``from_logits``: ``output`` is the input of the fused activation."""
        return self.forward_from_logits(output, target) if from_logits else self.forward(output, target)

    def value_and_grad(self, output, target, from_logits: bool = False):
        """``(mean loss, dL/d output)`` — with ``from_logits``, dL/d logits of the fused form (``a − y``)."""
        if from_logits:
            return self.forward_from_logits(output, target), self.grad_from_logits(output, target)
        return self.forward(output, target), self.grad(output, target)

    def __repr__(self) -> str:
        return f"{self.name}()"

    # -- helpers ------------------------------------------------------------------------------------
    def _check_output(self, output) -> None:
        if output.ndim != 2:
            raise ShapeError(f"{self.name}: expected network output of shape (N, K), "
                             f"received {tuple(output.shape)}")

    def _labels(self, output, target):
        """Validate ``target`` against ``output``; return integer labels ``(N,)`` or ``None`` if one-hot."""
        self._check_output(output)
        xp = array_module(output)
        target = xp.asarray(target)
        n, k = output.shape
        if target.ndim == 2:
            if target.shape != output.shape:
                raise ShapeError(f"{self.name}: expected one-hot targets of shape ({n}, {k}) like the output, "
                                 f"received {tuple(target.shape)}")
            return None
        if target.ndim != 1 or target.shape[0] != n:
            raise ShapeError(f"{self.name}: expected integer labels of shape ({n},) or one-hot targets of "
                             f"shape ({n}, {k}), received {tuple(target.shape)}")
        if target.dtype.kind not in "iub":
            raise ShapeError(f"{self.name}: expected integer class labels, received dtype {target.dtype}")
        n_classes = self._label_classes(k)
        low, high = (int(target.min()), int(target.max())) if n else (0, 0)
        if low < 0 or high >= n_classes:
            raise ShapeError(f"{self.name}: expected labels in [0, {n_classes - 1}] for {k} output(s), "
                             f"received labels from {low} to {high}")
        return target

    def _label_classes(self, k: int) -> int:
        """How many label values K outputs accept: K, except one output unit takes the labels 0 and 1."""
        return 2 if k == 1 else k

    def _dense_target(self, output, target):
        """Targets as an ``(N, K)`` float array like ``output`` (integer labels become one-hot rows).

        With a single output unit (K = 1) the labels are the 0/1 targets themselves.
        """
        labels = self._labels(output, target)
        xp = array_module(output)
        if labels is None:
            return xp.asarray(target, dtype=output.dtype)
        if output.shape[1] == 1:
            return labels.astype(output.dtype).reshape(-1, 1)
        onehot = xp.zeros(output.shape, dtype=output.dtype)
        onehot[xp.arange(output.shape[0]), labels] = 1
        return onehot

    def _finite(self, value) -> float:
        value = float(value)
        if not math.isfinite(value):
            raise NumericalError(f"{self.name}: the loss is {value}; training diverged (try a lower "
                                 "learning rate) or the input holds NaN/inf")
        return value


def _clip_eps(dtype) -> float:
    """How close to 0 or 1 a probability may get before its log: about 1e-7 in float32, 2e-16 in float64."""
    return float(np.finfo(dtype).eps)


class Quadratic(Loss):
    """Mean squared error, Nielsen's quadratic cost: ``C = (1/N) Σ_n ½ ‖a_n − y_n‖²``, ``dC/da = (a − y)/N``.

    (PyTorch's ``MSELoss`` averages over classes too and has no ½: ``C = MSELoss(a, y) · K / 2``.)
    """

    def forward(self, output, target) -> float:
        diff = output - self._dense_target(output, target)
        return self._finite(0.5 * (diff * diff).sum() / output.shape[0])

    def grad(self, output, target):
        return (output - self._dense_target(output, target)) / output.shape[0]


class BinaryCrossEntropy(Loss):
    """``C = −(1/N) Σ_n Σ_k [y ln a + (1 − y) ln(1 − a)]`` for sigmoid outputs ``a`` in (0, 1).

    On probabilities ``a`` is clipped to [ε, 1 − ε] before the logs. Fused with Sigmoid, the value per
    element is ``max(z, 0) − z y + ln(1 + e^−|z|)`` (exact, stable) and the gradient ``(σ(z) − y)/N``.
    """

    fused_activation = "Sigmoid"

    def forward(self, output, target) -> float:
        y = self._dense_target(output, target)
        xp = array_module(output)
        eps = _clip_eps(output.dtype)
        a = xp.clip(output, eps, 1 - eps)
        return self._finite(-(y * xp.log(a) + (1 - y) * xp.log1p(-a)).sum() / output.shape[0])

    def grad(self, output, target):
        y = self._dense_target(output, target)
        xp = array_module(output)
        eps = _clip_eps(output.dtype)
        a = xp.clip(output, eps, 1 - eps)
        return (a - y) / (a * (1 - a)) / output.shape[0]

    def forward_from_logits(self, logits, target) -> float:
        y = self._dense_target(logits, target)
        xp = array_module(logits)
        per_element = xp.maximum(logits, 0) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))
        return self._finite(per_element.sum() / logits.shape[0])

    def grad_from_logits(self, logits, target):
        return (sigmoid(logits) - self._dense_target(logits, target)) / logits.shape[0]


class SoftmaxCrossEntropy(Loss):
    """``C = −(1/N) Σ_n Σ_k y ln a`` (with labels: ``−(1/N) Σ_n ln a[n, label_n]``) for softmax outputs.

    On probabilities ``a`` is clipped to at least ε before the log. Fused with Softmax, the value uses
    ``ln softmax(z) = z − max z − ln Σ e^(z − max z)`` (no overflow, no log of 0) and the gradient is
    ``(softmax(z) − y)/N``. Integer labels never build a one-hot matrix: they index the row instead.
    """

    fused_activation = "Softmax"

    def _label_classes(self, k: int) -> int:
        return k

    def forward(self, output, target) -> float:
        labels = self._labels(output, target)
        xp = array_module(output)
        log_a = xp.log(xp.maximum(output, _clip_eps(output.dtype)))
        return self._finite(self._nll(log_a, target, labels))

    def grad(self, output, target):
        labels = self._labels(output, target)
        xp = array_module(output)
        a = xp.maximum(output, _clip_eps(output.dtype))
        n = output.shape[0]
        if labels is None:
            return -xp.asarray(target, dtype=output.dtype) / a / n
        g = xp.zeros_like(output)
        rows = xp.arange(n)
        g[rows, labels] = -1 / (a[rows, labels] * n)
        return g

    def forward_from_logits(self, logits, target) -> float:
        labels = self._labels(logits, target)
        xp = array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        return self._finite(self._nll(log_p, target, labels))

    def grad_from_logits(self, logits, target):
        labels = self._labels(logits, target)
        xp = array_module(logits)
        g = softmax(logits, axis=1)
        n = logits.shape[0]
        if labels is None:
            g -= xp.asarray(target, dtype=logits.dtype)
        else:
            g[xp.arange(n), labels] -= 1
        g /= n
        return g

    @staticmethod
    def _nll(log_p, target, labels) -> float:
        """Mean negative log-likelihood from log-probabilities ``(N, K)``."""
        xp = array_module(log_p)
        n = log_p.shape[0]
        if labels is None:
            return -(xp.asarray(target, dtype=log_p.dtype) * log_p).sum() / n
        return -log_p[xp.arange(n), labels].sum() / n


#: Loss classes by name (aliases included).
LOSSES: dict[str, type[Loss]] = {
    "quadratic": Quadratic,
    "mse": Quadratic,
    "binary-crossentropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "crossentropy": SoftmaxCrossEntropy,
    "softmax-crossentropy": SoftmaxCrossEntropy,
    "ce": SoftmaxCrossEntropy,
}


def get_loss(name) -> Loss:
    """A loss by name (see :data:`LOSSES`); a :class:`Loss` instance is passed through unchanged."""
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[str(name).lower()]()
    except KeyError:
        known = ", ".join(LOSSES)
        raise ConfigError(f"unknown loss {name!r}; expected one of: {known}") from None
