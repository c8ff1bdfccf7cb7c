"""EXPERIMENT (not used by the engine; see docs/performance.md, "Cache-blocked kernels: measured, not adopted").

Fast convolution kernels: im2col + GEMM on chunks of the batch small enough to stay in the L2 cache.

The maths is the textbook one (see :mod:`cnnlab.engine.layers.conv` and the plain version in
:mod:`cnnlab.engine.ops.reference`); this module is about *where the bytes go*. Forward is
``y = W (F, C·kh·kw) @ im2col(x)``. Done on the whole batch at once, the column matrix of a 16-channel 3x3
convolution on 28x28 MNIST images, batch 100, is 144 x 78,400 floats = 45 MB: twenty times a core's L2
cache. im2col writes it to main memory and the GEMM reads it back (and backward does it again), and that
traffic, not the arithmetic, is what the whole-batch version spends its time on.

So every kernel here walks the batch in **chunks** of a few images (:func:`chunk_size`: a chunk's
columns, padded copy and GEMM output fill about half of L2). A chunk's columns are written and read
back while still in cache, and the arrays are reused from chunk to chunk (:class:`Workspace`), so no
batch-sized work array exists at all. Backward does not keep the forward's columns: it recomputes a
chunk's columns from the input, which costs a copy in cache and saves storing 45 MB. The chunks are
spread over the cores (:func:`cnnlab.engine.ops.threads.parallel_for`): each slot of the batch has its own
workspace, and dL/dW, a sum over the batch, is added up slot by slot in a fixed order.

Per chunk of ``m`` images (``K = C·kh·kw``, ``G = Ho·Wg`` grid columns per image, see :mod:`.im2col`):

    forward   cols (K, m·G) = im2col(x[chunk]);  y[chunk] = W @ cols + b
    dL/dW     += δ[chunk] (F, m·G) @ cols.T                       (recomputed cols)
    dL/dx     dx[chunk] = col2im(W.T @ δ[chunk])                 (the full convolution with rot180(W))

Chunking changes only the order in which dL/dW's terms are added (float64 results agree to 1e-12 for any
chunk size; tests check it). Reference: the im2col formulation is Chellapilla, Puri & Simard, "High
Performance Convolutional Neural Networks for Document Processing" (2006); cache blocking of the
lowered matrix is the idea of Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication"
(2008), applied one level up.
"""

from __future__ import annotations

import functools

import numpy as np

from cnnlab.engine.backend import array_module
from chunked_threads import default_threads, parallel_for  # noqa: E402
from cnnlab.engine.ops.im2col import ConvGeometry, _images_in_padded, _interior, _window_view, im2col

#: Bytes a chunk's work arrays may take; None: half the L2 cache of one core (read from the OS).
CHUNK_BYTES: int | None = None

#: L2 size assumed when the OS does not say (most x86 and ARM server cores have 1-2 MiB).
FALLBACK_L2_BYTES = 1 << 20


@functools.lru_cache(maxsize=1)
def l2_cache_bytes() -> int:
    """The L2 cache of one core, from Linux's sysfs; :data:`FALLBACK_L2_BYTES` elsewhere."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as handle:
            text = handle.read().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        return FALLBACK_L2_BYTES


def chunk_size(geom: ConvGeometry, filters: int, itemsize: int, n: int) -> int:
    """Images per chunk: as many as keep one chunk's columns, padded copy and output in half the L2.

    One image needs ``K·G`` column values, ``C·Hp·Wp`` padded-input values and ``F·G`` output values.
    """
    budget = CHUNK_BYTES if CHUNK_BYTES is not None else l2_cache_bytes() // 2
    grid = geom.out_h * geom.grid_w
    per_image = itemsize * (geom.window_size * grid + geom.channels * geom.padded_h * geom.padded_w
                            + filters * grid)
    return int(max(1, min(n, budget // per_image)))


class Workspace:
    """Work arrays reused from call to call, one set per slot (thread) and purpose.

    Allocating fresh arrays on every chunk costs page faults and cache misses; a slot's arrays are
    touched only by that slot's thread. ``zeros=True`` arrays are zeroed once: their users write only
    the same interior every time, so the border stays zero (the padding of a padded image).
    """

    def __init__(self):
        self._arrays: dict = {}

    def get(self, slot: int, purpose: str, shape, dtype, xp, zeros: bool = False):
        key = (slot, purpose)
        array = self._arrays.get(key)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype or array_module(array) is not xp:
            array = (xp.zeros if zeros else xp.empty)(shape, dtype=dtype)
            self._arrays[key] = array
        return array

    def clear(self) -> None:
        self._arrays.clear()

    def __getstate__(self) -> dict:
        """Copies and pickles of a model leave the work arrays behind (they are rebuilt on first use)."""
        return {"_arrays": {}}


def _plan(x, geom: ConvGeometry, filters: int, chunk: int | None, threads: int | None):
    """(chunk, threads) for a batch: CuPy batches run whole, on the GPU's own parallelism."""
    if array_module(x) is not np:
        return len(x), 1
    chunk = chunk_size(geom, filters, x.dtype.itemsize, len(x)) if chunk is None else chunk
    return chunk, default_threads() if threads is None else threads


def _chunks(start: int, stop: int, chunk: int):
    for a in range(start, stop, chunk):
        yield a, min(a + chunk, stop)


def _columns(x, a, b, geom, ws, slot, tag):
    """im2col of images ``x[a:b]`` into the slot's work arrays: ``(K, m·G)``."""
    xp, m = array_module(x), b - a
    padded = ws.get(slot, f"{tag}.padded{m}", geom.padded_shape(m), x.dtype, xp, zeros=True)
    cols = ws.get(slot, f"{tag}.cols{m}", (geom.window_size, geom.grid_size(m)), x.dtype, xp)
    return im2col(x[a:b], geom, out=cols, padded=padded)


def _grid_view(y, m: int, geom: ConvGeometry):
    """``(F, m·Ho·Wg)`` GEMM result -> ``(m, F, Ho, Wo)`` view without the junk columns."""
    return y.reshape(y.shape[0], m, geom.out_h, geom.grid_w)[:, :, :, :geom.out_w].transpose(1, 0, 2, 3)


def _delta_grid(grad_out, a, b, geom, ws, slot):
    """δ of images ``[a, b)`` on the column grid ``(F, m·G)``, zeros in the junk columns (written once)."""
    xp, m, filters = array_module(grad_out), b - a, grad_out.shape[1]
    delta = ws.get(slot, f"delta{m}", (filters, geom.grid_size(m)), grad_out.dtype, xp, zeros=True)
    _grid_view(delta, m, geom)[...] = grad_out[a:b]
    return delta


def conv_forward(x, weights, bias, geom: ConvGeometry, ws: Workspace, chunk=None, threads=None,
                 tag: str = "forward"):
    """``x (N, C, H, W)``, ``weights (F, C, kh, kw)``, ``bias (F,)`` or None -> ``y (N, F, Ho, Wo)``.

    ``tag`` names this call's work arrays in ``ws`` (the input gradient runs this kernel too).
    """
    xp = array_module(x)
    n, filters = x.shape[0], weights.shape[0]
    w2d = weights.reshape(filters, -1)
    out = xp.empty((n, filters, geom.out_h, geom.out_w), dtype=x.dtype)
    chunk, threads = _plan(x, geom, filters, chunk, threads)

    def work(slot, start, stop):
        for a, b in _chunks(start, stop, chunk):
            cols = _columns(x, a, b, geom, ws, slot, tag)
            y = ws.get(slot, f"{tag}.y{b - a}", (filters, cols.shape[1]), x.dtype, xp)
            xp.matmul(w2d, cols, out=y)
            grid = _grid_view(y, b - a, geom)
            if bias is None:
                out[a:b] = grid
            else:
                xp.add(grid, bias.reshape(1, filters, 1, 1), out=out[a:b])  # crop, transpose, bias: one pass

    parallel_for(work, n, threads)
    return out


def conv_weight_grad(x, grad_out, geom: ConvGeometry, ws: Workspace, chunk=None, threads=None):
    """``(dL/dW (F, C, kh, kw), dL/db (F,))`` from the input ``x (N, C, H, W)`` and ``δ (N, F, Ho, Wo)``.

    ``dL/dW = Σ_chunks δ_chunk (F, m·G) @ cols_chunk.T``: the columns are recomputed in cache. We form
    the transposed product ``cols @ δ.T`` (C·kh·kw, F): the same numbers, and OpenBLAS runs this shape of
    a long-inner-dimension product about twice as fast (measured 62 vs 32 GFLOP/s on one core).
    """
    xp = array_module(x)
    n, filters = x.shape[0], grad_out.shape[1]
    chunk, threads = _plan(x, geom, filters, chunk, threads)

    def work(slot, start, stop):
        dw_t = xp.zeros((geom.window_size, filters), dtype=x.dtype)  # this slot's share, transposed
        product = ws.get(slot, "dw_t", dw_t.shape, x.dtype, xp)
        for a, b in _chunks(start, stop, chunk):
            cols = _columns(x, a, b, geom, ws, slot, "weight_grad")
            delta = _delta_grid(grad_out, a, b, geom, ws, slot)
            xp.matmul(cols, delta.T, out=product)
            dw_t += product
        return dw_t

    parts = parallel_for(work, n, threads)
    dw_t = parts[0]
    for part in parts[1:]:  # slot order: the same sum whatever the timing
        dw_t += part
    dw = xp.ascontiguousarray(dw_t.T).reshape(filters, geom.channels, geom.kernel_h, geom.kernel_w)
    return dw, grad_out.sum(axis=(0, 2, 3))


def conv_input_grad(grad_out, weights, geom: ConvGeometry, ws: Workspace, transposed: ConvGeometry | None = None,
                    chunk=None, threads=None):
    """dL/dx ``(N, C, H, W)`` from ``δ (N, F, Ho, Wo)``: the full convolution of δ with the rotated kernels.

    With ``transposed`` (the geometry of that convolution: stride 1, δ padded with ``k − 1 − P`` zeros) it
    *is* computed as a convolution, by :func:`conv_forward` with the kernels rotated 180° and their
    channel axes swapped ``(C, F, kh, kw)``. Otherwise (stride > 1, or more filters than channels, where
    that is more work) as ``col2im(W.T @ δ)``, chunk by chunk.
    """
    xp = array_module(grad_out)
    if transposed is not None:
        rotated = xp.ascontiguousarray(weights[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return conv_forward(grad_out, rotated, None, transposed, ws, chunk, threads, tag="input_grad")
    n, filters = grad_out.shape[0], weights.shape[0]
    w_t = weights.reshape(filters, -1).T
    dx = xp.empty((n, geom.channels, geom.height, geom.width), dtype=grad_out.dtype)
    chunk, threads = _plan(grad_out, geom, filters, chunk, threads)

    def work(slot, start, stop):
        for a, b in _chunks(start, stop, chunk):
            delta = _delta_grid(grad_out, a, b, geom, ws, slot)
            dcols = ws.get(slot, f"dcols{b - a}", (geom.window_size, delta.shape[1]), delta.dtype, xp)
            xp.matmul(w_t, delta, out=dcols)
            _col2im_into(dcols, b - a, geom, ws, slot, dx[a:b])

    parallel_for(work, n, threads)
    return dx


def _col2im_into(dcols, m: int, geom: ConvGeometry, ws: Workspace, slot: int, out):
    """Adjoint of im2col for one chunk: add each column onto its window, write the interior to ``out``.

    We loop over the ``kh·kw`` kernel offsets (not over pixels): each adds one strided slab of the chunk.
    """
    xp = array_module(dcols)
    padded = ws.get(slot, f"col2im.padded{m}", geom.padded_shape(m), dcols.dtype, xp)
    padded.fill(0)
    windows = _window_view(padded, m, geom)
    slabs = dcols.reshape(windows.shape)
    for i in range(geom.kernel_h):
        for j in range(geom.kernel_w):
            windows[:, i, j] += slabs[:, i, j]
    out[...] = _interior(_images_in_padded(padded, m, geom), geom).transpose(1, 0, 2, 3)
