"""Flatten: the bridge from feature maps to fully connected layers."""

from __future__ import annotations

import math

from .base import Layer


class Flatten(Layer):
    """``(N, C, H, W) -> (N, C*H*W)`` (any per-sample shape -> one vector per sample).

    The forward pass is a reshape (a view for contiguous input, so nothing is copied), and the backward
    pass reshapes the gradient back to the input shape: flattening moves numbers around, it computes
    nothing, so the only thing it remembers is the input shape.
    """

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self._shape = None  # the batch's input shape, cached in training mode

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        if training or keep_cache:
            self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self.cached(self._shape))
