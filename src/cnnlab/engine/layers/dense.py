"""The fully connected layer: every output unit sees every input.

``y = x @ W + b`` with ``x`` of shape ``(N, n_in)``, ``W`` of shape ``(n_in, units)`` and ``b`` of shape
``(units,)``. (PyTorch's ``nn.Linear`` stores the transpose, ``(units, n_in)``, and computes ``x @ W.T``.)

Backward, for ``G = dL/dy`` of shape ``(N, units)``::

    dL/dW = x.T @ G          (n_in, units)   — summed over the batch by the matrix product
    dL/db = Σ_n G[n]         (units,)
    dL/dx = G @ W.T          (N, n_in)
"""

from __future__ import annotations

from ..errors import ShapeError
from ..init import get_initializer
from .base import Layer, positive_int


class Dense(Layer):
    """Fully connected layer ``(N, n_in) -> (N, units)``; put :class:`Flatten` before it after convolutions."""

    #: Only the weights are decayed by weight decay; the bias is not (classic L2 rule).
    regularized = ("W",)

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer: str = "glorot",
                 bias_initializer: str = "zeros", name: str | None = None):
        super().__init__(name)
        positive_int(units, "units", "Dense")
        get_initializer(kernel_initializer)  # fail now, not at build time, on an unknown name
        get_initializer(bias_initializer)
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._x = None  # the input, cached in training mode for dL/dW

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(
                f"{self.describe()}: expected a flat per-sample input (n_in,), received {input_shape}; "
                "add a Flatten layer before it"
            )
        return (self.units,)

    def state_shapes(self, input_shape):
        n_in = input_shape[0]
        return {"W": (n_in, self.units), **({"b": (self.units,)} if self.use_bias else {})}

    def init_params(self, rng):
        n_in = self.input_shape[0]
        shape = (n_in, self.units)
        self.params["W"] = get_initializer(self.kernel_initializer)(shape, n_in, self.units, rng, self.dtype)
        if self.use_bias:
            self.params["b"] = get_initializer(self.bias_initializer)((self.units,), n_in, self.units, rng,
                                                                      self.dtype)
        self.zero_grads()

    def get_config(self) -> dict:
        config = {"units": self.units, "use_bias": self.use_bias,
                  "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer}
        return config

    def forward_flops(self, batch: int) -> int:
        n_in, n_out = self.params["W"].shape
        return 2 * batch * n_in * n_out

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        """``(N, n_in) -> (N, units)``."""
        self.check_input(x)
        y = x @ self.params["W"]
        if self.use_bias:
            y += self.params["b"]  # in place: y is a fresh array
        if training or keep_cache:
            self._x = x
        return y

    def backward(self, grad_out):
        """``(N, units) -> (N, n_in)``; stores ``grads["W"]`` and ``grads["b"]``."""
        self.grads["W"] = self.cached(self._x).T @ grad_out
        if self.use_bias:
            self.grads["b"] = grad_out.sum(axis=0)
        if not self.needs_input_grad:  # first layer: dL/dx (the data) is never used
            return None
        return grad_out @ self.params["W"].T
