"""im2col / col2im: layout against a naive loop, adjointness, output sizes, buffer reuse."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError
from cnnlab.engine.ops.im2col import (ConvGeometry, col2im, conv_output_size, grid_to_images, im2col, images_to_grid,
                               same_padding)

GEOMETRIES = [  # (C, H, W, kh, kw, stride, pad_h, pad_w)
    (1, 5, 5, 3, 3, 1, (0, 0), (0, 0)),
    (3, 7, 9, 3, 3, 1, (1, 1), (1, 1)),
    (2, 7, 9, 5, 3, 2, (2, 2), (1, 1)),
    (2, 6, 6, 4, 4, 1, (1, 2), (1, 2)),
    (4, 8, 7, 2, 3, 3, (0, 0), (2, 2)),
]


def naive_windows(x, g: ConvGeometry):
    """cols[(c, i, j), (n, u, v)] = x_pad[n, c, u*s + i, v*s + j], by explicit loops."""
    n = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), g.pad_h, g.pad_w))
    out = np.zeros((g.channels, g.kernel_h, g.kernel_w, n, g.out_h, g.out_w))
    for c in range(g.channels):
        for i in range(g.kernel_h):
            for j in range(g.kernel_w):
                for m in range(n):
                    for u in range(g.out_h):
                        for v in range(g.out_w):
                            out[c, i, j, m, u, v] = xp[m, c, u * g.stride + i, v * g.stride + j]
    return out


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "expected"), [
    (28, 5, 1, 2, 28), (14, 5, 1, 0, 10), (28, 3, 1, 1, 28), (7, 3, 2, 1, 4), (9, 3, 2, 0, 4),
    (6, 4, 1, (1, 2), 6), (5, 5, 1, 0, 1), (32, 3, 3, 0, 10),
])
def test_conv_output_size(size, kernel, stride, padding, expected):
    assert conv_output_size(size, kernel, stride, padding) == expected


def test_conv_output_size_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ConfigError, match="kernel 7 does not fit in input of size 5"):
        conv_output_size(5, 7, 1, 0)
    assert conv_output_size(5, 7, 1, 1) == 1  # fits once padded


def test_same_padding_keeps_the_size_with_stride_1():
    assert same_padding(3) == (1, 1)
    assert same_padding(5) == (2, 2)
    assert same_padding(4) == (1, 2)  # even kernels: the extra zero goes after, as in PyTorch
    for k in range(1, 8):
        assert conv_output_size(11, k, 1, same_padding(k)) == 11


@pytest.mark.parametrize("geom", [ConvGeometry(*g) for g in GEOMETRIES], ids=str)
def test_im2col_matches_naive_windows(geom):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, geom.channels, geom.height, geom.width))
    cols = im2col(x, geom)
    assert cols.shape == (geom.window_size, geom.grid_size(3))
    grid = cols.reshape(geom.channels, geom.kernel_h, geom.kernel_w, 3, geom.out_h, geom.grid_w)
    np.testing.assert_array_equal(grid[..., :geom.out_w], naive_windows(x, geom))


@pytest.mark.parametrize("geom", [ConvGeometry(*g) for g in GEOMETRIES], ids=str)
def test_col2im_is_the_adjoint_of_im2col(geom):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: what makes the backward pass exact."""
    rng = np.random.default_rng(2)
    n = 2
    x = rng.standard_normal((n, geom.channels, geom.height, geom.width))
    c = rng.standard_normal((geom.window_size, geom.grid_size(n)))
    dx = col2im(c, n, geom)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.sum(im2col(x, geom) * c), np.sum(x * dx), rtol=1e-12)


def test_col2im_adds_overlapping_windows():
    """A 3x3 kernel, stride 1, on a 4x4 image: each pixel gets one contribution per window covering it."""
    geom = ConvGeometry(1, 4, 4, 3, 3)
    ones = np.zeros((geom.window_size, geom.grid_size(1)))
    ones.reshape(9, 1, geom.out_h, geom.grid_w)[..., :geom.out_w] = 1.0  # junk columns stay zero
    counts = col2im(ones, 1, geom)[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_reused_buffers_give_the_same_result_and_keep_the_dtype():
    geom = ConvGeometry(2, 6, 5, 3, 3, 1, (1, 1), (1, 1))
    rng = np.random.default_rng(3)
    cols = np.empty((geom.window_size, geom.grid_size(4)), dtype=np.float32)
    padded = np.zeros(geom.padded_shape(4), dtype=np.float32)
    for _ in range(3):  # the zero border must survive being reused with new images
        x = rng.standard_normal((4, 2, 6, 5)).astype(np.float32)
        got = im2col(x, geom, out=cols, padded=padded)
        assert got is cols and got.dtype == np.float32
        np.testing.assert_array_equal(got, im2col(x, geom))


def test_grid_round_trip_drops_and_zeroes_junk_columns():
    geom = ConvGeometry(1, 6, 7, 3, 3, 1, (1, 1), (1, 1))  # stride 1: grid width 9 > output width 7
    rng = np.random.default_rng(4)
    dy = rng.standard_normal((2, 5, geom.out_h, geom.out_w))
    grid = images_to_grid(dy, geom)
    assert grid.shape == (5, geom.grid_size(2))
    junk = grid.reshape(5, 2, geom.out_h, geom.grid_w)[..., geom.out_w:]
    assert junk.size and not junk.any()
    np.testing.assert_array_equal(grid_to_images(grid, 2, geom), dy)
    bias = np.arange(5.0)
    np.testing.assert_array_equal(grid_to_images(grid, 2, geom, bias), dy + bias[None, :, None, None])
