"""The readable reference of every fast kernel: convolution and pooling, forward and backward, in plain NumPy.

The layers run fast kernels (:mod:`cnnlab.engine.ops.im2col`: channel-major columns, full-width rows, reused
buffers, strided views). Those tricks make the code hard to check by eye, so here is the same maths
written the way a textbook writes it, short enough to read in one sitting. The tests compare every fast
kernel with these functions on awkward shapes (odd sizes, stride 2, padding, 1/3/7 channels, batch 1 and
257) in float64 to 1e-10; the functions here are in turn checked against the definitions written as
explicit loops over every output value.

im2col in the form of *Deep Learning from Scratch* (Saito, 2016, ``common/util.py``): one loop over the
``kh x kw`` kernel offsets; offset ``(i, j)`` of every window of the batch is one strided slice of the
padded input. The convolution is then one matrix product (Chellapilla, Puri & Simard, 2006)::

    cols (N·Ho·Wo, C·kh·kw)     row (n, u, v): the window of output pixel (u, v) of image n, flattened
    y = cols @ W.reshape(F, -1).T + b        -> (N·Ho·Wo, F) -> (N, F, Ho, Wo)

and its three gradients are the three products of that one matrix product (``δ`` reshaped the same way)::

    dL/db = Σ rows of δ        dL/dW = δ.T @ cols        dL/dcols = δ @ W   -> col2im -> dL/dx

Shapes: ``x (N, C, H, W)``, ``w (F, C, kh, kw)``, ``b (F,)``, ``y (N, F, Ho, Wo)`` with
``Ho = (H + pad_before + pad_after − kh) // stride + 1``; padding is given as ``(before, after)`` pairs.
"""

from __future__ import annotations

import numpy as np


def _output_size(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> int:
    return (size + pad[0] + pad[1] - kernel) // stride + 1


def im2col(x, kh: int, kw: int, stride=1, pad_h=(0, 0), pad_w=(0, 0)):
    """``x (N, C, H, W)`` -> ``cols (N·Ho·Wo, C·kh·kw)``: every window of the batch as one row."""
    n, c, h, w = x.shape
    ho, wo = _output_size(h, kh, stride, pad_h), _output_size(w, kw, stride, pad_w)
    padded = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    cols = np.zeros((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):  # offset (i, j) of every window: one strided slice of the padded input
            cols[:, :, i, j] = padded[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, -1)


def col2im(cols, x_shape, kh: int, kw: int, stride=1, pad_h=(0, 0), pad_w=(0, 0)):
    """Adjoint of :func:`im2col`: every row added back onto its window; ``-> dx (N, C, H, W)``."""
    n, c, h, w = x_shape
    ho, wo = _output_size(h, kh, stride, pad_h), _output_size(w, kw, stride, pad_w)
    windows = cols.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((n, c, h + sum(pad_h), w + sum(pad_w)), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):  # where windows overlap, their contributions add up
            padded[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += windows[:, :, i, j]
    return padded[:, :, pad_h[0]:pad_h[0] + h, pad_w[0]:pad_w[0] + w]


def conv_forward(x, w, b, stride=1, pad_h=(0, 0), pad_w=(0, 0)):
    """``y[n, f, u, v] = b[f] + Σ_{c,i,j} w[f, c, i, j] · x_pad[n, c, u·S + i, v·S + j]`` as one product."""
    n, (f, _, kh, kw) = x.shape[0], w.shape
    ho, wo = _output_size(x.shape[2], kh, stride, pad_h), _output_size(x.shape[3], kw, stride, pad_w)
    y = im2col(x, kh, kw, stride, pad_h, pad_w) @ w.reshape(f, -1).T + b
    return y.reshape(n, ho, wo, f).transpose(0, 3, 1, 2)


def conv_backward(x, w, dy, stride=1, pad_h=(0, 0), pad_w=(0, 0)):
    """``(dx (N, C, H, W), dw (F, C, kh, kw), db (F,))`` for ``dy = dL/dy (N, F, Ho, Wo)``."""
    f, _, kh, kw = w.shape
    cols = im2col(x, kh, kw, stride, pad_h, pad_w)
    delta = dy.transpose(0, 2, 3, 1).reshape(-1, f)  # (N·Ho·Wo, F), rows in the order of cols
    db = delta.sum(axis=0)
    dw = (delta.T @ cols).reshape(w.shape)
    dx = col2im(delta @ w.reshape(f, -1), x.shape, kh, kw, stride, pad_h, pad_w)
    return dx, dw, db


def _pool_windows(x, ph: int, pw: int, sh: int, sw: int):
    """``(N, C, Ho, Wo, ph·pw)``: the values of every pooling window (a copy, one slice per offset)."""
    n, c, h, w = x.shape
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    windows = np.empty((n, c, ho, wo, ph * pw), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[..., i * pw + j] = x[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw][:, :, :ho, :wo]
    return windows


def pool_forward(x, pool=(2, 2), stride=(2, 2), kind="max"):
    """``(N, C, H, W) -> (N, C, Ho, Wo)``: the maximum or the mean of every window."""
    windows = _pool_windows(x, *pool, *stride)
    return windows.max(axis=-1) if kind == "max" else windows.mean(axis=-1)


def pool_backward(x, dy, pool=(2, 2), stride=(2, 2), kind="max"):
    """dL/dx for ``dy (N, C, Ho, Wo)``: max sends each window's gradient to its first maximum, mean
    spreads it evenly; where windows overlap the shares add up."""
    (ph, pw), (sh, sw) = pool, stride
    windows = _pool_windows(x, ph, pw, sh, sw)
    if kind == "max":  # one-hot of the first maximum (argmax returns the first on ties, as PyTorch routes)
        share = np.zeros_like(windows)
        np.put_along_axis(share, windows.argmax(axis=-1)[..., None], 1.0, axis=-1)
    else:
        share = np.full_like(windows, 1.0 / (ph * pw))
    share *= dy[..., None]
    ho, wo = dy.shape[2:]
    dx = np.zeros_like(x)
    for i in range(ph):
        for j in range(pw):
            dx[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw][:, :, :ho, :wo] += share[..., i * pw + j]
    return dx
