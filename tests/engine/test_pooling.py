"""MaxPool2D / AvgPool2D: naive-loop reference, finite differences, PyTorch parity, ties, bad inputs."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.pooling import AvgPool2D, MaxPool2D


def naive_pool(x, pool, stride, kind):
    """Forward and the backward of dy = 1... as loops: returns (y, route) where route(dy) -> dx."""
    (ph, pw), (sh, sw) = pool, stride
    n, c, h, w = x.shape
    ho, wo = (h - ph) // sh + 1, (w - pw) // sw + 1
    y = np.zeros((n, c, ho, wo))
    for m in range(n):
        for k in range(c):
            for u in range(ho):
                for v in range(wo):
                    window = x[m, k, u * sh:u * sh + ph, v * sw:v * sw + pw]
                    y[m, k, u, v] = window.max() if kind == "max" else window.mean()

    def route(dy):
        dx = np.zeros_like(x)
        for m in range(n):
            for k in range(c):
                for u in range(ho):
                    for v in range(wo):
                        rows, cols = slice(u * sh, u * sh + ph), slice(v * sw, v * sw + pw)
                        if kind == "max":  # first maximum in row-major order, like PyTorch
                            i, j = np.unravel_index(np.argmax(x[m, k, rows, cols]), (ph, pw))
                            dx[m, k, u * sh + i, v * sw + j] += dy[m, k, u, v]
                        else:
                            dx[m, k, rows, cols] += dy[m, k, u, v] / (ph * pw)
        return dx

    return y, route


CASES = [  # (input shape, pool_size, stride)
    ((2, 3, 8, 8), 2, None),        # the fast path: windows tile the input
    ((2, 2, 7, 9), 2, None),        # odd sizes: the last row / column is never pooled
    ((2, 2, 7, 9), 3, 2),           # overlapping windows
    ((3, 1, 9, 9), 3, None),
    ((2, 2, 8, 9), (2, 3), (1, 2)),  # rectangular windows, overlapping along one axis
]
LAYERS = {"max": MaxPool2D, "avg": AvgPool2D}
IDS = [f"{shape}-p{pool}-s{stride}" for shape, pool, stride in CASES]


def build(kind, pool, stride, shape, dtype=np.float64):
    layer = LAYERS[kind](pool, stride)
    layer.build(shape[1:], np.random.default_rng(0), dtype=dtype)
    return layer


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "pool", "stride"), CASES, ids=IDS)
def test_forward_and_backward_match_the_naive_reference(kind, shape, pool, stride):
    rng = np.random.default_rng(1)
    layer = build(kind, pool, stride, shape)
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True)
    y_ref, route = naive_pool(x, layer.pool_size, layer.stride, kind)
    assert y.shape == (shape[0], *layer.output_shape) == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), route(dy), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "pool", "stride"), CASES, ids=IDS)
def test_gradients_match_finite_differences(kind, shape, pool, stride):
    layer = build(kind, pool, stride, shape)
    # Max pooling is differentiable only where a window's maximum is unique: use distinct values spaced
    # well apart (a shuffled ramp), so no perturbation of ±eps can change which input is the maximum.
    size = int(np.prod(shape))
    x = np.random.default_rng(2).permutation(size).reshape(shape) * (4.0 / size) - 2.0
    errors = check_layer(layer, x, eps=1e-5)
    assert list(errors) == ["x"] and errors["x"] < 1e-6, errors


def test_overlapping_windows_add_their_gradients():
    """3x3 windows, stride 2, on a 5x5 image whose maximum is the centre: all four windows pick it."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    layer = build("max", 3, 2, x.shape)
    assert layer.forward(x, training=True).tolist() == [[[[1.0, 1.0], [1.0, 1.0]]]]
    dx = layer.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert dx[0, 0, 2, 2] == 10.0 and dx.sum() == 10.0


def test_max_ties_route_the_gradient_to_the_first_maximum_only():
    x = np.zeros((1, 1, 2, 4))  # two windows full of zeros, as after a ReLU
    x[0, 0, 1, 3] = 5.0
    layer = build("max", 2, None, x.shape)
    layer.forward(x, training=True)
    dx = layer.backward(np.array([[[[1.0, 1.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize("pool, dtype", [(16, np.uint8), (17, np.uint16)])
def test_max_argmax_holds_every_offset_of_large_windows(pool, dtype):
    """A 17x17 window has 289 offsets: more than uint8 holds (288 would wrap around to 32)."""
    x = np.zeros((2, 1, pool, pool))
    x[0, 0, -1, -1] = 1.0  # the last offset, pool * pool - 1
    x[1, 0, 1, 15] = 1.0   # offset pool + 15
    layer = build("max", pool, None, x.shape)
    np.testing.assert_array_equal(layer.forward(x, training=True).ravel(), [1.0, 1.0])
    assert layer._argmax.dtype == dtype
    dx = layer.backward(np.array([2.0, 3.0]).reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(dx, x * np.array([2.0, 3.0]).reshape(2, 1, 1, 1))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "pool", "stride"), CASES, ids=IDS)
def test_parity_with_pytorch(kind, shape, pool, stride):
    torch = pytest.importorskip("torch", reason="PyTorch is only needed for the parity check")
    rng = np.random.default_rng(3)
    layer = build(kind, pool, stride, shape)
    module = (torch.nn.MaxPool2d if kind == "max" else torch.nn.AvgPool2d)(layer.pool_size, layer.stride)
    x = rng.standard_normal(shape)
    x[0, 0, :2, :2] = 0.0  # a tie, resolved the same way by both
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.forward(x, training=True), yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_float32_stays_float32(kind):
    layer = build(kind, 2, None, (4, 3, 6, 6), dtype=np.float32)
    x = np.random.default_rng(4).standard_normal((4, 3, 6, 6)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32


def test_output_shape_config_and_defaults():
    layer = MaxPool2D(3, stride=2)
    assert layer.build((32, 15, 15), np.random.default_rng(0)) == (32, 7, 7)
    assert AvgPool2D(2).build((6, 28, 28), np.random.default_rng(0)) == (6, 14, 14)
    assert AvgPool2D(2).stride == (2, 2)  # stride defaults to the pool size
    assert layer.get_config() == {"pool_size": [3, 3], "stride": [2, 2]}
    assert MaxPool2D(**layer.get_config()).build((32, 15, 15), np.random.default_rng(0)) == (32, 7, 7)
    assert layer.n_params == 0 and layer.params == {}


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_bad_arguments_and_inputs(cls):
    with pytest.raises(ConfigError, match=f"{cls.__name__}: pool_size must be a positive integer.*received 0"):
        cls(0)
    with pytest.raises(ConfigError, match=r"stride must be .*received -1"):
        cls(2, stride=-1)
    with pytest.raises(ConfigError, match=r"pool 4x4 is larger than the input \(C, H, W\) = \(1, 3, 3\)"):
        cls(4).build((1, 3, 3), np.random.default_rng(0))
    layer = cls(2, name="pool")
    layer.build((3, 8, 8), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=rf"{cls.__name__} 'pool': expected input of shape \(N, 3, 8, 8\), "
                                         r"received \(2, 4, 8, 8\)"):
        layer.forward(np.zeros((2, 4, 8, 8), np.float32))
    with pytest.raises(ShapeError, match=r"expected images \(C, H, W\) per sample, received \(64,\)"):
        cls(2).build((64,), np.random.default_rng(0))
    layer.forward(np.zeros((2, 3, 8, 8), np.float32), training=True)
    with pytest.raises(ShapeError, match=r"expected a gradient of shape \(2, 3, 4, 4\)"):
        layer.backward(np.zeros((2, 3, 8, 8), np.float32))
