"""The fast kernels against the readable reference (cnnlab.engine.ops.reference), and the reference against the
definitions written as loops. float64, 1e-10, on awkward shapes: odd sizes, stride 2, padding, 1/3/7
channels, batch 1 and 257."""

import numpy as np
import pytest

from cnnlab.engine.layers.conv import Conv2D
from cnnlab.engine.layers.pooling import AvgPool2D, MaxPool2D
from cnnlab.engine.ops import conv_kernels, reference
from cnnlab.engine.ops.im2col import ConvGeometry
from test_conv import naive_conv, naive_conv_backward
from test_pooling import naive_pool

CONV_CASES = [  # (input (N, C, H, W), Conv2D kwargs)
    ((1, 1, 9, 9), dict(filters=3, kernel_size=3)),
    ((257, 1, 8, 7), dict(filters=2, kernel_size=3, padding=1)),
    ((3, 3, 11, 9), dict(filters=7, kernel_size=3, stride=2, padding=1)),
    ((2, 7, 10, 13), dict(filters=3, kernel_size=5, padding=2)),
    ((5, 7, 9, 9), dict(filters=7, kernel_size=3)),                      # F <= C: dL/dx as a convolution
    ((4, 3, 12, 11), dict(filters=1, kernel_size=(5, 3), stride=2)),
    ((257, 3, 7, 7), dict(filters=3, kernel_size=3, padding="same")),
    ((2, 3, 8, 9), dict(filters=7, kernel_size=(4, 2), padding="same")),
]


def conv_layer(kwargs, shape):
    layer = Conv2D(**kwargs)
    layer.build(shape[1:], np.random.default_rng(0), dtype=np.float64)
    layer.params["b"][...] = np.random.default_rng(1).standard_normal(layer.params["b"].shape)
    return layer


@pytest.mark.parametrize(("shape", "kwargs"), CONV_CASES, ids=[f"{c[0]}-{c[1]}" for c in CONV_CASES])
def test_fast_convolution_matches_the_reference(shape, kwargs):
    rng = np.random.default_rng(2)
    layer = conv_layer(kwargs, shape)
    geom = layer.geometry
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True)
    w, b, s = layer.params["W"], layer.params["b"], layer.stride[0]
    np.testing.assert_allclose(y, reference.conv_forward(x, w, b, s, geom.pad_h, geom.pad_w), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dx_ref, dw_ref, db_ref = reference.conv_backward(x, w, dy, s, geom.pad_h, geom.pad_w)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["W"], dw_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.grads["b"], db_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", [1, 3, None, 10_000], ids=["chunk 1", "chunk 3", "chunk by cache", "whole batch"])
@pytest.mark.parametrize(("shape", "kwargs"), CONV_CASES, ids=[f"{c[0]}-{c[1]}" for c in CONV_CASES])
def test_the_chunked_kernels_match_the_reference_for_any_chunk_size(shape, kwargs, chunk, monkeypatch):
    """Forward, dL/dW, dL/db and dL/dx (col2im form) of ops.conv_kernels, chunk by chunk, equal the reference."""
    monkeypatch.setattr(conv_kernels, "BLAS_THREADS", 1)  # "chunk by cache" really chunks
    rng = np.random.default_rng(5)
    layer = conv_layer(kwargs, shape)
    geom, w, b, s = layer.geometry, layer.params["W"], layer.params["b"], layer.stride[0]
    x = rng.standard_normal(shape)
    padded = np.zeros(geom.padded_shape(shape[0]))
    y = conv_kernels.convolve(x, w, b, geom, padded=padded, chunk=chunk)
    np.testing.assert_allclose(y, reference.conv_forward(x, w, b, s, geom.pad_h, geom.pad_w), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    dw, db, dx = conv_kernels.convolution_gradients(dy, w, padded, geom, input_grad=True, chunk=chunk)
    for ours, expected in zip((dx, dw, db), reference.conv_backward(x, w, dy, s, geom.pad_h, geom.pad_w)):
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10)


def test_the_chunk_size_follows_the_cache_budget(monkeypatch):
    """Chunks hold at most about CHUNK_BYTES of columns, and a CuPy-like module gets the whole batch."""
    geom = ConvGeometry(16, 28, 28, 3, 3, 1, (1, 1), (1, 1))  # 144 x 840 floats = 484 kB of columns per image
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 4 << 20)
    monkeypatch.setattr(conv_kernels, "BLAS_THREADS", None)
    assert conv_kernels.images_per_chunk(geom, 50, 4) == 50  # BLAS on several threads: the whole batch
    monkeypatch.setattr(conv_kernels, "BLAS_THREADS", 1)
    assert conv_kernels.images_per_chunk(geom, 50, 4) == 8  # 8 fit in 4 MB: 7 chunks
    assert conv_kernels.images_per_chunk(geom, 9, 4) == 5  # 9 images: 2 chunks, evened out
    assert [b - a for a, b in conv_kernels.chunk_bounds(50, 8)] == [8] * 6 + [2]
    assert conv_kernels.images_per_chunk(geom, 50, 8) == 4  # float64: twice the bytes
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 1)
    assert conv_kernels.images_per_chunk(geom, 50, 4) == 1  # never less than one image
    assert conv_kernels.images_per_chunk(geom, 50, 4, xp=object()) == 50


@pytest.mark.parametrize(("shape", "kwargs"), CONV_CASES[2:5], ids=[str(c[1]) for c in CONV_CASES[2:5]])
def test_the_reference_convolution_is_the_definition(shape, kwargs):
    rng = np.random.default_rng(3)
    shape = (2, *shape[1:])  # the loops are slow: two images are enough
    layer = conv_layer(kwargs, shape)
    geom = layer.geometry
    x, w, b, s = rng.standard_normal(shape), layer.params["W"], layer.params["b"], layer.stride[0]
    y = reference.conv_forward(x, w, b, s, geom.pad_h, geom.pad_w)
    np.testing.assert_allclose(y, naive_conv(x, w, b, s, geom.pad_h, geom.pad_w), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for ours, loops in zip(reference.conv_backward(x, w, dy, s, geom.pad_h, geom.pad_w),
                           naive_conv_backward(x, w, dy, s, geom.pad_h, geom.pad_w)):
        np.testing.assert_allclose(ours, loops, rtol=1e-10, atol=1e-12)


def test_reference_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> = <x, col2im(c)> for every x and c: the defining property of the adjoint."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 7, 8))
    cols = reference.im2col(x, 3, 2, 2, (1, 0), (0, 2))
    c = rng.standard_normal(cols.shape)
    assert np.isclose(np.sum(cols * c), np.sum(x * reference.col2im(c, x.shape, 3, 2, 2, (1, 0), (0, 2))))


POOL_CASES = [  # (input shape, pool, stride)
    ((1, 1, 8, 8), (2, 2), (2, 2)),
    ((257, 3, 6, 6), (2, 2), (2, 2)),
    ((3, 7, 9, 11), (3, 3), (2, 2)),
    ((2, 3, 7, 9), (2, 3), (1, 2)),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "pool", "stride"), POOL_CASES, ids=[str(c) for c in POOL_CASES])
def test_fast_pooling_matches_the_reference_and_the_definition(kind, shape, pool, stride):
    rng = np.random.default_rng(5)
    layer = (MaxPool2D if kind == "max" else AvgPool2D)(pool, stride)
    layer.build(shape[1:], rng, dtype=np.float64)
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, reference.pool_forward(x, pool, stride, kind), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx_ref = reference.pool_backward(x, dy, pool, stride, kind)
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-10, atol=1e-12)
    if shape[0] <= 3:  # the loops: small batches only
        y_loops, route = naive_pool(x, pool, stride, kind)
        np.testing.assert_allclose(reference.pool_forward(x, pool, stride, kind), y_loops, rtol=1e-10)
        np.testing.assert_allclose(dx_ref, route(dy), rtol=1e-10, atol=1e-12)
