"""Batch normalization (Ioffe & Szegedy 2015).

Each channel (after a convolution, input ``(N, C, H, W)``: statistics over N, H and W) or each feature
(after a dense layer, input ``(N, D)``: statistics over N) is normalized to zero mean and unit variance,
then scaled and shifted by learned ``gamma`` and ``beta``::

    x̂ = (x − μ) / √(σ² + ε)        y = γ x̂ + β

Training uses the statistics of the batch (the biased variance, dividing by m, the number of values per
channel) and updates running averages ``r ← (1 − momentum) r + momentum · stat``, where the running
variance uses the unbiased batch variance (dividing by m − 1) — PyTorch's convention. Inference uses the
running averages, so a prediction does not depend on the rest of its batch.

Parameters and buffers: ``gamma`` and ``beta`` are parameters (in ``params``, trained, never decayed).
``running_mean`` and ``running_var`` are *buffers*: state that is not trained, kept in the separate dict
``self.buffers`` (see :class:`~cnnlab.engine.layers.base.Layer`), so the optimizer never sees it while the model
file (``Sequential.state_dict``) saves and restores it alongside the parameters. The running averages are
updated in place, so arrays loaded into the buffers stay the ones the layer uses.

Backward (the compact closed form, with sums over the m values of a channel and G = dL/dy)::

    dL/dγ = Σ G ⊙ x̂        dL/dβ = Σ G
    dL/dx = γ / (m √(σ² + ε)) · (m G − dL/dβ − x̂ ⊙ dL/dγ)

Every statistic above is a per-channel *sum over the batch* (Σ x, Σ (x − μ)², Σ G, Σ G ⊙ x̂), taken by
:meth:`BatchNorm.batch_sum`; the data-parallel step's replica (:class:`cnnlab.data_parallel.SyncBatchNorm`)
adds those sums up across the shards of a batch, and nothing else.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..errors import ConfigError, ShapeError
from .base import Layer


class BatchNorm(Layer):
    """Normalizes per channel ``(N, C, H, W)`` or per feature ``(N, D)``; output shape = input shape."""

    regularized = ()  # gamma and beta are not decayed

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ConfigError(f"BatchNorm: momentum must be a number in [0, 1], received {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
            raise ConfigError(f"BatchNorm: eps must be a positive number, received {eps!r}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self._cache = None  # (x̂, 1/√(σ²+ε), m) from the last training forward pass

    def compute_output_shape(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ShapeError(
                f"{self.describe()}: expected per-sample input (D,) after a dense layer or (C, H, W) after a "
                f"convolution, received {input_shape}"
            )
        return input_shape

    def state_shapes(self, input_shape):
        channels = (input_shape[0],)
        return {"gamma": channels, "beta": channels, "running_mean": channels, "running_var": channels}

    def init_params(self, rng):
        channels = self.input_shape[0]
        self.params["gamma"] = np.ones(channels, dtype=self.dtype)
        self.params["beta"] = np.zeros(channels, dtype=self.dtype)
        self.buffers["running_mean"] = np.zeros(channels, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(channels, dtype=self.dtype)
        self.zero_grads()

    def get_config(self) -> dict:
        config = {"momentum": self.momentum, "eps": self.eps}
        return config

    @staticmethod
    def _layout(x):
        """The axes statistics are taken over, and the shape that broadcasts a (C,) vector against x."""
        if x.ndim == 4:
            return (0, 2, 3), (1, -1, 1, 1)
        return (0,), (1, -1)

    @staticmethod
    def _channel_dot(a, b):
        """``Σ a ⊙ b`` per channel, ``(C,)``, in one pass without the ``a * b`` temporary (einsum)."""
        spec = "nchw,nchw->c" if a.ndim == 4 else "nc,nc->c"
        return array_module(a).einsum(spec, a, b)

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        axes, bshape = self._layout(x)
        gamma = self.params["gamma"].reshape(bshape)
        beta = self.params["beta"].reshape(bshape)
        if not training:
            mean = self.buffers["running_mean"].reshape(bshape)
            inv_std = 1 / array_module(x).sqrt(self.buffers["running_var"].reshape(bshape) + self.eps)
            if keep_cache:  # the statistics are constants here: m = None marks the inference form
                self._cache = ((x - mean) * inv_std, inv_std, None)
            return (x - mean) * (gamma * inv_std) + beta

        xp = array_module(x)
        m = self.batch_count(x) * (x.size // max(x.shape[0] * x.shape[1], 1))  # values per channel
        if m < 2:
            raise ShapeError(f"{self.describe()}: training needs more than one value per channel, "
                             f"received input of shape {tuple(x.shape)}")
        mean = (self.batch_sum(x.sum(axis=axes)) / m).astype(x.dtype).reshape(bshape)
        centered = x - mean
        # biased variance (÷ m): it normalizes this batch; two passes (mean first) avoid cancellation
        var = (self.batch_sum(self._channel_dot(centered, centered)) / m).astype(x.dtype).reshape(bshape)
        inv_std = 1 / xp.sqrt(var + self.eps)
        x_hat = centered
        x_hat *= inv_std  # in place: centered is not needed any more
        self.update_running(mean.reshape(-1), var.reshape(-1) * (m / (m - 1)))
        self._cache = (x_hat, inv_std, m)
        y = x_hat * gamma
        y += beta
        return y

    def batch_count(self, x) -> int:
        """Samples in the batch: ``N`` of ``x`` ``(N, ...)``."""
        return x.shape[0]

    def batch_sum(self, sums):
        """Per-channel sums ``(C,)`` over the batch, already summed over ``x``'s samples: returned as is."""
        return sums

    def update_running(self, batch_mean, unbiased_var) -> None:
        """``r ← (1 − momentum) r + momentum · stat``, in place (loaded buffers stay the ones in use)."""
        for key, stat in (("running_mean", batch_mean), ("running_var", unbiased_var)):
            running = self.buffers[key]
            running *= 1 - self.momentum
            running += self.momentum * stat

    def backward(self, grad_out):
        x_hat, inv_std, m = self.cached(self._cache)
        axes, bshape = self._layout(grad_out)
        xp = array_module(grad_out)
        channels = grad_out.shape[1]
        dbeta = grad_out.sum(axis=axes)
        dgamma = self._channel_dot(grad_out, x_hat)
        self.grads["gamma"] = dgamma
        self.grads["beta"] = dbeta
        if not self.needs_input_grad:
            return None
        if m is None:  # inference form y = γ (x − running mean) / √(running var + ε) + β: a per-channel scale
            return grad_out * (self.params["gamma"].reshape(bshape) * inv_std)
        totals = self.batch_sum(xp.concatenate([dbeta, dgamma]))  # the input gradient needs whole-batch sums
        dbeta, dgamma = totals[:channels].reshape(bshape), totals[channels:].reshape(bshape)
        # dL/dx = γ/√(σ²+ε) · (G − dL/dβ / m − x̂ ⊙ dL/dγ / m), the closed form above divided through by m,
        # computed in place in one work array (the layer's largest cost is passes over (N, C, H, W)).
        grad_in = x_hat * (dgamma / m)
        grad_in += dbeta / m
        xp.subtract(grad_out, grad_in, out=grad_in)
        grad_in *= self.params["gamma"].reshape(bshape) * inv_std
        return grad_in
