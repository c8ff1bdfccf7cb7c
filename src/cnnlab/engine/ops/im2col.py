"""im2col / col2im: turning a convolution into one matrix product.

A convolution slides a ``kh x kw`` window over a padded ``(C, H, W)`` image. ``im2col`` copies every window
into one column of a matrix, so that the whole convolution of a batch becomes one GEMM::

    cols  (C*kh*kw, N*Ho*Wg)        row (c, i, j), column (n, ho, wo): x_pad[n, c, ho*s + i, wo*s + j]
    W     (F, C*kh*kw)              the kernels, one per row (PyTorch's (F, C, kh, kw) flattened)
    W @ cols -> (F, N*Ho*Wg)        every output value of every image, in one sgemm call

``col2im`` is the adjoint: it adds every column back onto the window it came from (values that several
windows share receive the sum), which is what the backward pass needs.

Output size along one axis, for input size W, kernel F, stride S and padding P (before + after)::

    W' = (W − F + 2P) / S + 1        (``conv_output_size``; floor division, as PyTorch does)

Two choices make this fast on a CPU (the copies cost as much as the GEMM, so they are what we optimise):

* **Channel-major columns.** Rows are ``(c, i, j)`` and columns ``(n, ho, wo)``, so ``W @ cols`` needs no
  transposed copy of either operand and the copy's inner loop runs along image rows (contiguous memory).
* **Full-width rows for stride 1.** With stride 1 we compute each output row over the whole padded width
  ``Wg = Wp`` instead of ``Wo``: the last ``kw − 1`` values of each row are junk (their windows run past the
  right edge into the next row) and are dropped afterwards. In exchange every row of ``cols`` is, per image,
  *one contiguous run* of ``Ho*Wp`` input values instead of ``Ho`` runs of ``Wo`` values, which makes
  im2col/col2im close to memcpy speed (measured on a 16→16 channel 3x3 conv on 28x28, batch 100: forward
  1.2x and backward 1.45x faster than exact ``Wo``-wide columns, for ``Wp/Wo`` = 7-15% more GEMM work at the
  LeNet/VGG-on-MNIST sizes, 40% for a 5x5 kernel on 14x14 unpadded). For stride > 1 the grid is exact:
  ``Wg = Wo``.

The padded image lives in a *channel-major flat array* ``(C, N*Hp*Wp + tail)``: image ``n`` channel ``c``
occupies ``[n*Hp*Wp, (n+1)*Hp*Wp)`` of row ``c``; the short zero ``tail`` lets the junk windows of the last
image read past its end without leaving the array. All functions take an optional ``out`` so a layer can
reuse its work arrays between batches (allocating tens of MB per call costs as much as the copy itself).

Everything is written against ``xp = array_module(x)``, so the same code runs on CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backend import array_module
from ..errors import ConfigError


def conv_output_size(size: int, kernel: int, stride: int = 1, padding=0) -> int:
    """``(size − kernel + pad_before + pad_after) // stride + 1``; ``padding`` is an int or a pair.

    Raises :class:`ConfigError` when the kernel does not fit in the padded input.
    """
    before, after = (padding, padding) if isinstance(padding, int) else padding
    padded = size + before + after
    if kernel > padded:
        raise ConfigError(
            f"kernel {kernel} does not fit in input of size {size} with padding {padding} "
            f"(padded size {padded})"
        )
    return (padded - kernel) // stride + 1


def same_padding(kernel: int) -> tuple[int, int]:
    """Padding ``(before, after)`` that keeps the size with stride 1: ``kernel − 1`` zeros in total.

    Odd kernels pad symmetrically (3 -> (1, 1), 5 -> (2, 2)); even kernels put the extra zero after
    (4 -> (1, 2)), as PyTorch's ``padding="same"`` does.
    """
    total = kernel - 1
    return total // 2, total - total // 2


@dataclass(frozen=True)
class ConvGeometry:
    """The window layout of one convolution (or pooling) on per-sample inputs ``(C, H, W)``.

    ``pad_h`` / ``pad_w`` are ``(before, after)`` pairs. Derived sizes: padded ``Hp x Wp``, output
    ``Ho x Wo`` and the column grid ``Ho x Wg`` (``Wg = Wp`` for stride 1, see the module docstring).
    """

    channels: int
    height: int
    width: int
    kernel_h: int
    kernel_w: int
    stride: int = 1
    pad_h: tuple[int, int] = (0, 0)
    pad_w: tuple[int, int] = (0, 0)

    @property
    def padded_h(self) -> int:
        return self.height + sum(self.pad_h)

    @property
    def padded_w(self) -> int:
        return self.width + sum(self.pad_w)

    @property
    def out_h(self) -> int:
        return conv_output_size(self.height, self.kernel_h, self.stride, self.pad_h)

    @property
    def out_w(self) -> int:
        return conv_output_size(self.width, self.kernel_w, self.stride, self.pad_w)

    @property
    def grid_w(self) -> int:
        """Columns computed per output row: the full padded width for stride 1, exactly ``Wo`` otherwise."""
        return self.padded_w if self.stride == 1 else self.out_w

    @property
    def window_size(self) -> int:
        """Rows of the column matrix: ``C * kh * kw``."""
        return self.channels * self.kernel_h * self.kernel_w

    def grid_size(self, n: int) -> int:
        """Columns of the column matrix for a batch of ``n``: ``n * Ho * Wg``."""
        return n * self.out_h * self.grid_w

    def padded_shape(self, n: int) -> tuple[int, int]:
        """Shape of the channel-major flat padded array: ``(C, n*Hp*Wp + tail)``."""
        return self.channels, n * self.padded_h * self.padded_w + self.kernel_w - 1


# -- the padded, channel-major image array ---------------------------------------------------------------
def _images_in_padded(padded, n: int, geom: ConvGeometry):
    """The ``(C, n, Hp, Wp)`` view of a flat padded array (without its tail)."""
    size = n * geom.padded_h * geom.padded_w
    return padded[:, :size].reshape(geom.channels, n, geom.padded_h, geom.padded_w)


def _interior(images, geom: ConvGeometry):
    """The un-padded ``(C, n, H, W)`` part of a ``(C, n, Hp, Wp)`` view."""
    top, left = geom.pad_h[0], geom.pad_w[0]
    return images[:, :, top:top + geom.height, left:left + geom.width]


def pad_flat(x, geom: ConvGeometry, out=None):
    """Copy ``x (N, C, H, W)`` into a zero-padded channel-major flat array ``(C, N*Hp*Wp + tail)``.

    ``out``, when given, must come from an earlier call with the same shape: only the interior is written,
    so its zero border (and tail) is still in place. The copy also converts to ``out``'s dtype.
    """
    xp = array_module(x)
    n = x.shape[0]
    if out is None:
        out = xp.zeros(geom.padded_shape(n), dtype=x.dtype)
    _interior(_images_in_padded(out, n, geom), geom)[...] = x.transpose(1, 0, 2, 3)
    return out


def _window_view(padded, n: int, geom: ConvGeometry):
    """Strided view ``(C, kh, kw, n, Ho, Wg)`` of a flat padded array: every window, nothing copied.

    Element ``[c, i, j, m, ho, wo]`` is ``x_pad[m, c, ho*s + i, wo*s + j]``.
    """
    xp = array_module(padded)
    item = padded.itemsize
    s, wp = geom.stride, geom.padded_w
    shape = (geom.channels, geom.kernel_h, geom.kernel_w, n, geom.out_h, geom.grid_w)
    strides = (padded.strides[0], wp * item, item, geom.padded_h * wp * item, s * wp * item, s * item)
    return xp.lib.stride_tricks.as_strided(padded, shape=shape, strides=strides)


def window_columns(windows, a: int, b: int, out):
    """The columns of images ``[a, b)`` from the window view of a padded batch, copied into ``out``
    ``(C*kh*kw, (b−a)*Ho*Wg)`` (the one big copy of im2col)."""
    part = windows[:, :, :, a:b]
    out.reshape(part.shape)[...] = part
    return out


def im2col(x, geom: ConvGeometry, out=None, padded=None):
    """``x (N, C, H, W)`` -> ``cols (C*kh*kw, N*Ho*Wg)`` (see the module docstring for the layout).

    ``out`` / ``padded`` are optional reusable work arrays for the result and for the padded image.
    """
    xp = array_module(x)
    n = x.shape[0]
    padded = pad_flat(x, geom, out=padded)
    if out is None:
        out = xp.empty((geom.window_size, geom.grid_size(n)), dtype=padded.dtype)
    return window_columns(_window_view(padded, n, geom), 0, n, out)


def fold_columns(cols, n: int, geom: ConvGeometry, padded):
    """Add every column of ``cols (C*kh*kw, n*Ho*Wg)`` onto its window of ``padded`` (zeroed first, shape
    ``geom.padded_shape(n)``); return the ``(n, C, H, W)`` view of the interior (the core of col2im).

    We loop over the ``kh*kw`` kernel offsets (not over pixels): each step adds one strided slab of the
    whole batch, so no slow ``np.add.at`` is needed.
    """
    padded.fill(0)
    windows = _window_view(padded, n, geom)  # a view: adding into it adds into ``padded``
    slabs = cols.reshape(windows.shape)
    for i in range(geom.kernel_h):
        for j in range(geom.kernel_w):
            windows[:, i, j] += slabs[:, i, j]
    return _interior(_images_in_padded(padded, n, geom), geom).transpose(1, 0, 2, 3)


def col2im(cols, n: int, geom: ConvGeometry, padded=None):
    """Adjoint of :func:`im2col`: ``cols (C*kh*kw, n*Ho*Wg)`` -> ``dx (n, C, H, W)``.

    Each column is added back onto its window of the padded image; where windows overlap the values add
    up; the padding is then cut away. Junk grid columns (stride 1) must hold zeros, which they do when
    ``cols`` comes from a product with a gradient whose junk columns are zero (:func:`images_to_grid`).
    ``padded`` is an optional reusable work array.
    """
    xp = array_module(cols)
    if padded is None:
        padded = xp.empty(geom.padded_shape(n), dtype=cols.dtype)
    # .copy(): always a new array, never a view of ``padded`` (a work array the next call overwrites)
    return fold_columns(cols, n, geom, padded).copy()


def grid_to_images(y, n: int, geom: ConvGeometry, bias=None, out=None):
    """GEMM result ``(F, n*Ho*Wg)`` -> NCHW ``(n, F, Ho, Wo)``, dropping junk columns (plus ``bias``),
    into ``out`` when given."""
    xp = array_module(y)
    f = y.shape[0]
    grid = y.reshape(f, n, geom.out_h, geom.grid_w)[:, :, :, :geom.out_w].transpose(1, 0, 2, 3)
    if out is None:
        out = xp.empty((n, f, geom.out_h, geom.out_w), dtype=y.dtype)
    if bias is None:
        out[...] = grid
    else:
        xp.add(grid, bias.reshape(1, f, 1, 1), out=out)  # crop, transpose and bias in one pass
    return out


def images_to_grid(dy, geom: ConvGeometry, out=None):
    """NCHW ``dy (N, F, Ho, Wo)`` -> ``(F, N*Ho*Wg)`` with zeros in the junk columns (inverse of the above),
    into ``out`` when given (whatever it held)."""
    xp = array_module(dy)
    n, f = dy.shape[:2]
    if out is None:
        out = xp.empty((f, geom.grid_size(n)), dtype=dy.dtype)
    grid = out.reshape(f, n, geom.out_h, geom.grid_w)
    grid[:, :, :, geom.out_w:] = 0
    grid[:, :, :, :geom.out_w] = dy.transpose(1, 0, 2, 3)
    return out
