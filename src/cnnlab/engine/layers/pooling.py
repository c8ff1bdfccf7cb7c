"""Pooling layers: summarise each ``p x p`` window of every channel by its maximum or its mean.

Shapes: ``(N, C, H, W) -> (N, C, Ho, Wo)`` with ``Ho = (H − p) / S + 1`` (floor; rows and columns that no
window reaches are ignored and get zero gradient). The stride ``S`` defaults to the pool size
(non-overlapping windows); ``MaxPool2D(3, stride=2)`` gives overlapping windows, where gradients add up.

How we compute it: for each of the ``p*p`` offsets ``(i, j)`` inside the window, ``x[:, :, i::S, j::S]``
(cut to ``Ho x Wo``) is a strided view holding that offset's value for *every* window of the batch. A max
or a mean over windows is then ``p*p`` element-wise operations on whole views: no copy into columns, no
Python loop over samples or pixels. The backward pass walks the same views to send gradients back.

* MaxPool2D: the gradient of a window goes to the position of its maximum (the *first* one on ties, like
  PyTorch; it matters after a ReLU, where whole windows of zeros are common); every other input gets 0.
* AvgPool2D: each input of a window gets ``1 / (p*p)`` of the window's gradient.

Fast path: when windows tile the input exactly (stride = pool size, sizes divisible) the views are the
sub-arrays of ``x.reshape(N, C, H/p, p, W/p, p)``, so the backward pass can write each offset's gradient
straight into its place (no zero-fill, no accumulation).
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..errors import ConfigError, ShapeError
from ..ops.im2col import conv_output_size
from .base import Layer, int_pair


class _Pool2D(Layer):
    """Shared machinery: argument checks, output shape and the per-offset strided views."""

    def __init__(self, pool_size, stride=None, name: str | None = None):
        super().__init__(name)
        self.pool_size = int_pair(pool_size, "pool_size", self.kind, 1)
        self.stride = self.pool_size if stride is None else int_pair(stride, "stride", self.kind, 1)
        self._x_shape = None

    def get_config(self) -> dict:
        return {"pool_size": list(self.pool_size), "stride": list(self.stride)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(f"{self.describe()}: expected images (C, H, W) per sample, received {input_shape}")
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if ph > h or pw > w:
            raise ConfigError(f"{self.describe()}: pool {ph}x{pw} is larger than the input (C, H, W) = "
                              f"{tuple(input_shape)}")
        return c, conv_output_size(h, ph, sh, 0), conv_output_size(w, pw, sw, 0)

    @property
    def _tiles(self) -> bool:
        """True when windows tile the input exactly: each input belongs to exactly one window."""
        _, h, w = self.input_shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        return (ph, pw) == (sh, sw) and h % ph == 0 and w % pw == 0

    def _offsets(self, x):
        """Yield ``(k, view)`` for each offset of the window: ``view[n, c, u, v] = x[n, c, u*S + i, v*S + j]``."""
        _, ho, wo = self.output_shape
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        if self._tiles:  # the same views, as sub-arrays of the (N, C, Ho, p, Wo, p) reshape
            blocks = x.reshape(x.shape[0], x.shape[1], ho, ph, wo, pw)
            for i in range(ph):
                for j in range(pw):
                    yield i * pw + j, blocks[:, :, :, i, :, j]
        else:
            for i in range(ph):
                for j in range(pw):
                    yield i * pw + j, x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    def _input_gradient(self, grad_out, share_of):
        """dL/dx from ``share_of(k, grad_out)``, the gradient each window sends to its offset ``k``."""
        xp = array_module(grad_out)
        if self._tiles:  # every input is in exactly one view: write, no zero-fill, no accumulation
            dx = xp.empty(self._x_shape, dtype=grad_out.dtype)
            for k, view in self._offsets(dx):
                view[...] = share_of(k, grad_out)
        else:  # overlapping windows, or edges no window reaches: start from zeros and add
            dx = xp.zeros(self._x_shape, dtype=grad_out.dtype)
            for k, view in self._offsets(dx):
                view += share_of(k, grad_out)
        return dx

    def _check_grad(self, grad_out):
        expected = (self.cached(self._x_shape)[0], *self.output_shape)
        if tuple(grad_out.shape) != expected:
            raise ShapeError(f"{self.describe()}: expected a gradient of shape {expected}, "
                             f"received {tuple(grad_out.shape)}")


class MaxPool2D(_Pool2D):
    """``(N, C, H, W) -> (N, C, Ho, Wo)``: the maximum of each window; gradient routed to the argmax."""

    def __init__(self, pool_size=2, stride=None, name: str | None = None):
        super().__init__(pool_size, stride, name)
        self._argmax = None  # (N, C, Ho, Wo): which offset of each window holds the maximum

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        xp = array_module(x)
        out = argmax = None
        # The smallest unsigned type holding every offset: uint8 up to 16x16 windows, uint16 beyond.
        index_type = np.min_scalar_type(self.pool_size[0] * self.pool_size[1] - 1).type
        training = training or keep_cache  # from here on, "training" means "keep what backward needs"
        for k, view in self._offsets(x):
            if out is None:
                out = view.copy()
                if training:
                    argmax = xp.zeros(out.shape, dtype=index_type)
                continue
            if training:
                # Strictly greater, so ties keep the first maximum (as PyTorch does). k grows with every
                # offset, so "argmax = k where greater" is max(argmax, k * greater): branch-free arithmetic,
                # several times faster than a masked copy on a random mask.
                xp.maximum(argmax, xp.multiply(view > out, index_type(k)), out=argmax)
            xp.maximum(out, view, out=out)
        if training:
            self._argmax, self._x_shape = argmax, x.shape
        return out

    def backward(self, grad_out):
        self._check_grad(grad_out)
        return self._input_gradient(grad_out, lambda k, g: g * (self._argmax == k))  # 0 unless argmax is k


class AvgPool2D(_Pool2D):
    """``(N, C, H, W) -> (N, C, Ho, Wo)``: the mean of each window; gradient spread evenly over it."""

    def __init__(self, pool_size=2, stride=None, name: str | None = None):
        super().__init__(pool_size, stride, name)

    def forward(self, x, training: bool = False, keep_cache: bool = False):
        self.check_input(x)
        xp = array_module(x)
        out = None
        for _, view in self._offsets(x):
            if out is None:
                out = view.copy()
            else:
                xp.add(out, view, out=out)
        out *= x.dtype.type(1.0 / (self.pool_size[0] * self.pool_size[1]))  # stay in x's dtype
        if training or keep_cache:
            self._x_shape = x.shape
        return out

    def backward(self, grad_out):
        self._check_grad(grad_out)
        share = grad_out * grad_out.dtype.type(1.0 / (self.pool_size[0] * self.pool_size[1]))
        return self._input_gradient(grad_out, lambda k, g: share)
