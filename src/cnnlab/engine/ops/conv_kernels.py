"""The convolution's three kernels — forward, dL/dW (+ dL/db), dL/dx — on chunks of the batch that fit in cache.

The maths is the textbook one (:mod:`cnnlab.engine.layers.conv` derives it; :mod:`.reference` writes it
plainly); this module is about *where the bytes go*. Done on a whole batch at once, the column matrix of a
16-channel 3x3 convolution on 28x28 images is 144 x 42,000 floats = 24 MB for 50 images: im2col writes it to
main memory, the GEMM reads it back, and backward keeps it and reads it twice more. With M = F = 16 rows
the GEMM does only 16 multiply-adds per column value it loads, so it runs at the speed of memory: measured
on one core (AMD EPYC, OpenBLAS 0.3.31 ``SkylakeX``) 32 GFLOP/s on the whole batch, 64-80 GFLOP/s on
slices of a few images that stay in cache.

So every kernel walks the batch in **chunks** of a few images (:func:`images_per_chunk`: the chunk's
columns take at most about :data:`CHUNK_BYTES`, 2 MB). A chunk's columns are written and read back while they are still
in cache, into work arrays shared by every layer of the thread (:func:`.workspace.scratch`), so no
batch-sized column matrix exists at all. Backward does not keep the forward's columns either: it keeps the
padded input (``1/(kh·kw)`` of their size) and recomputes a chunk's columns from it, a copy in cache.
Per chunk of ``m`` images (``K = C·kh·kw``, ``G = Ho·Wg`` grid columns per image, see :mod:`.im2col`)::

    forward   cols (K, m·G) = windows of x_pad[chunk];  y[chunk] = W (F, K) @ cols + b
    dL/dW     += δ[chunk] (F, m·G) @ cols.T          (cols recomputed)
    dL/dx     dx[chunk] = col2im(W.T @ δ[chunk])     (or the forward kernel on the padded δ, see conv.py)

Chunking changes only the order in which dL/dW's terms are added (float64 results agree to 1e-12 for any
chunk size; the tests check chunk sizes 1, 3 and the whole batch). A CuPy batch runs as one chunk: a GPU
wants the biggest products it can get.

References: the im2col formulation is Chellapilla, Puri & Simard, "High Performance Convolutional Neural
Networks for Document Processing" (2006); blocking the lowered matrix for the cache is the idea of Goto &
van de Geijn, "Anatomy of High-Performance Matrix Multiplication" (2008), applied one level up.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from .im2col import (ConvGeometry, _window_view, fold_columns, grid_to_images, images_to_grid, pad_flat,
                     window_columns)
from .workspace import scratch

#: Bytes of column matrix per chunk. Measured on a 2-vCPU AMD EPYC (1 MB of L2 per core, 32 MB of L3 shared),
#: a whole vgg-mini training step of 100 images, both cores busy with a shard each (worker processes), median
#: of 4 rounds: 0.5 MB 58.7 ms, 1 MB 53.6, 2 MB 51.8, 4 MB 55.5, 8 MB 68.8 (the whole batch's columns: ~80).
#: Smaller chunks mean more NumPy calls per layer; bigger ones spill out of the caches. Set it to tune for
#: another machine.
CHUNK_BYTES = 2 << 20

#: Threads the BLAS library runs with, when the caller knows: :mod:`cnnlab.threads` sets 1 while it holds
#: BLAS to one thread (every data-parallel shard, in a thread or a worker process). ``None``: unknown,
#: assumed several — then the batch is one chunk, because a multi-threaded BLAS splits each small product
#: over its threads and loses more to their hand-offs than the cache gains (measured, LeNet-5 serial step of
#: 100 images with 2 OpenBLAS threads: 11.1 ms on the whole batch, 28.9 ms in 2 MB chunks; 14.5 ms in
#: chunks with one thread).
BLAS_THREADS: int | None = None


def images_per_chunk(geom: ConvGeometry, n: int, itemsize: int, xp=np) -> int:
    """How many images of a batch of ``n`` one chunk holds: columns of at most about :data:`CHUNK_BYTES`
    (never less than one image), as few chunks as that allows, evened out. The whole batch is one chunk
    for CuPy and unless BLAS runs on one thread (:data:`BLAS_THREADS`)."""
    if xp is not np or BLAS_THREADS != 1:
        return n
    per_image = itemsize * geom.window_size * geom.out_h * geom.grid_w
    most = max(1, CHUNK_BYTES // per_image)
    chunks = -(-n // most)  # ceil: as few chunks as the budget allows, then as even as they can be
    return -(-n // chunks)


def chunk_bounds(n: int, chunk: int):
    """``(start, stop)`` of each chunk of ``chunk`` images (the last one may be shorter)."""
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


def _columns(windows, a: int, b: int, geom: ConvGeometry, dtype, xp):
    """im2col of images ``[a, b)`` from the window view of the padded batch: ``(K, m·G)``, in scratch."""
    return window_columns(windows, a, b, scratch("conv.cols", (geom.window_size, geom.grid_size(b - a)), dtype, xp))


def convolve(x, weights, bias, geom: ConvGeometry, padded=None, chunk: int | None = None):
    """``x (N, C, H, W)``, ``weights (F, C, kh, kw)``, ``bias (F,)`` or None -> ``y (N, F, Ho, Wo)``.

    ``padded`` is the flat padded copy of ``x`` to fill (``geom.padded_shape(N)``, zero border), kept by a
    training layer for backward; without it one is allocated. ``chunk``: images per chunk (default
    :func:`images_per_chunk`).
    """
    xp = array_module(x)
    n, filters = x.shape[0], weights.shape[0]
    dtype = weights.dtype
    if padded is None:
        padded = xp.zeros(geom.padded_shape(n), dtype=dtype)
    pad_flat(x, geom, out=padded)  # also converts to the weights' dtype
    windows = _window_view(padded, n, geom)
    w2d = weights.reshape(filters, -1)
    out = xp.empty((n, filters, geom.out_h, geom.out_w), dtype=dtype)
    chunk = chunk or images_per_chunk(geom, n, padded.itemsize, xp)
    for a, b in chunk_bounds(n, chunk):
        cols = _columns(windows, a, b, geom, dtype, xp)
        y = xp.matmul(w2d, cols, out=scratch("conv.y", (filters, cols.shape[1]), dtype, xp))
        grid_to_images(y, b - a, geom, bias, out=out[a:b])  # crop the junk columns, add the bias: one pass
    return out


def convolution_gradients(grad_out, weights, padded, geom: ConvGeometry, input_grad: bool = True,
                          chunk: int | None = None):
    """``(dL/dW (F, C, kh, kw), dL/db (F,), dL/dx (N, C, H, W) or None)`` from ``δ = grad_out (N, F, Ho, Wo)``.

    ``padded`` is the flat padded input the forward pass kept. dL/dx is computed here as ``col2im(W.T @ δ)``
    chunk by chunk when ``input_grad``; the layer may instead compute it as a convolution (see conv.py).
    """
    xp = array_module(grad_out)
    n, filters = grad_out.shape[0], weights.shape[0]
    dtype = weights.dtype
    windows = _window_view(padded, n, geom)
    w2d = weights.reshape(filters, -1)
    # OpenBLAS runs dL/dW's product (long inner dimension m·G) 15-40% faster as cols @ δ.T, a (K, F) result,
    # when the windows have at least as many values as there are filters (docs/performance.md).
    transposed = geom.window_size >= filters
    dw = xp.zeros((geom.window_size, filters) if transposed else (filters, geom.window_size), dtype=dtype)
    dx = xp.empty((n, geom.channels, geom.height, geom.width), dtype=dtype) if input_grad else None
    chunk = chunk or images_per_chunk(geom, n, padded.itemsize, xp)
    for a, b in chunk_bounds(n, chunk):
        cols = _columns(windows, a, b, geom, dtype, xp)  # recomputed: cheaper than keeping them
        delta = images_to_grid(grad_out[a:b], geom, out=scratch("conv.delta", (filters, cols.shape[1]), dtype, xp))
        product = scratch("conv.dw", dw.shape, dtype, xp)
        dw += xp.matmul(cols, delta.T, out=product) if transposed else xp.matmul(delta, cols.T, out=product)
        if input_grad:
            dcols = xp.matmul(w2d.T, delta, out=scratch("conv.dcols", cols.shape, dtype, xp))
            padded_dx = scratch("conv.dpadded", geom.padded_shape(b - a), dtype, xp)
            dx[a:b] = fold_columns(dcols, b - a, geom, padded_dx)  # col2im of the chunk
    dw = (xp.ascontiguousarray(dw.T) if transposed else dw).reshape(weights.shape)
    return dw, grad_out.sum(axis=(0, 2, 3)), dx
