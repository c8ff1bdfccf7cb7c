"""The contract every layer keeps.

A layer is a small object with

* ``build(input_shape, rng, dtype) -> output_shape``: called once by the model when the per-sample input
  shape is known (shapes exclude the batch axis, e.g. ``(1, 28, 28)``); creates ``params``;
* ``forward(x, training, keep_cache) -> y``: computes the output for a batch. In training mode it caches
  what ``backward`` needs; in inference mode it caches nothing, unless ``keep_cache`` asks it to (an
  explanation such as a saliency map backpropagates through the *inference* network: dropout off,
  BatchNorm with its running statistics);
* ``backward(grad_out) -> grad_in``: given dL/dy, stores dL/dparam in ``grads`` (same keys as ``params``)
  and returns dL/dx;
* ``get_config() -> dict``: the constructor arguments, so a model file can rebuild the layer.
* ``regularized``: names of the parameters weight decay applies to; ``buffers``: non-trained state
  (saved with the model); ``needs_input_grad``: False on the first layer, whose input gradient nobody uses
  (``backward`` may then return ``None``).

Parameters live in ``self.params`` and their gradients in ``self.grads``, dicts keyed by short names
("W", "b", "gamma", ...). The model collects them with dotted names (``"0.W"``), the optimizer only ever
sees (parameter, gradient) pairs.
"""

from __future__ import annotations

import numpy as np

from ..backend import DEFAULT_DTYPE, array_module
from ..errors import ConfigError, ShapeError


def positive_int(value, what: str, layer: str) -> int:
    """``value`` if it is an int >= 1 (not a bool); else a :class:`ConfigError` quoting it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{layer}: {what} must be a positive integer, received {value!r}")
    return value


def int_pair(value, what: str, layer: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (each >= ``minimum``) -> pair; :class:`ConfigError` quoting the value."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair)):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ConfigError(f"{layer}: {what} must be {kind} or a pair of them, received {value!r}")
    return int(pair[0]), int(pair[1])


class Layer:
    """Base class: a layer with no parameters that passes shapes through unchanged."""

    #: Names of the parameters that weight decay (L2) applies to: weights, never biases.
    regularized: tuple[str, ...] = ()

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        # Arrays that are part of the model's state but not trained (BatchNorm's running statistics).
        self.buffers: dict[str, np.ndarray] = {}
        # The model sets this to False on the first layer: the gradient w.r.t. the data is never needed.
        self.needs_input_grad = True
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype = DEFAULT_DTYPE

    # -- construction -------------------------------------------------------------------------------
    def build(self, input_shape, rng: np.random.Generator, dtype=DEFAULT_DTYPE) -> tuple[int, ...]:
        """Record the per-sample input shape, create parameters, return the per-sample output shape."""
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.init_params(rng)
        return self.output_shape

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (identity unless overridden)."""
        return input_shape

    def init_params(self, rng: np.random.Generator) -> None:
        """Create ``self.params`` (and zeroed ``self.grads``); layers without parameters do nothing."""

    def state_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters and buffers :meth:`build` would create for ``input_shape``, allocating
        nothing (a model file is checked against them before any array is made); ``{}`` by default."""
        return {}

    def get_config(self) -> dict:
        """Constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {}

    # -- computation --------------------------------------------------------------------------------
    def forward(self, x, training: bool = False, keep_cache: bool = False):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def forward_flops(self, batch: int) -> int:
        """Floating-point operations (2 per multiply-add) of a forward pass on ``batch`` samples. Only the
        matrix products count; element-wise layers cost memory traffic, not arithmetic: 0."""
        return 0

    def backward_flops(self, batch: int) -> int:
        """dL/dW costs as much as the forward product; dL/dx once more, unless it is skipped (layer 0)."""
        return self.forward_flops(batch) * (2 if self.needs_input_grad else 1)

    # -- helpers ------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The layer's class name, used in summaries, configs and error messages."""
        return type(self).__name__

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def describe(self) -> str:
        """``"Conv2D 'conv1'"``-style label for error messages."""
        return f"{self.kind} {self.name!r}" if self.name else self.kind

    def check_input(self, x) -> None:
        """Raise :class:`ShapeError` unless ``x`` is a batch of this layer's per-sample input shape."""
        if self.input_shape is None:
            return
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"{self.describe()}: expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"received {tuple(x.shape)}"
            )

    def cached(self, value):
        """``value`` (something the last training forward pass kept for backward), or a RuntimeError
        saying that backward came first."""
        if value is None:
            raise RuntimeError(f"{self.describe()}: backward() needs a forward(x, training=True) (or keep_cache=True) first")
        return value

    def zero_grads(self) -> None:
        for key, p in self.params.items():
            self.grads[key] = array_module(p).zeros_like(p)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.kind}({args})"
