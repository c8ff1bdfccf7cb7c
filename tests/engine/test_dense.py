"""Dense and Flatten: gradient checks, parity with torch.nn.Linear, shapes and bad input."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.dense import Dense
from cnnlab.engine.layers.reshape import Flatten

TOL = 1e-6


def built_dense(n_in=5, units=3, **kwargs):
    layer = Dense(units, **kwargs)
    layer.build((n_in,), np.random.default_rng(0), dtype=np.float64)
    if "b" in layer.params:  # non-zero bias, so a wrong bias gradient cannot hide behind zeros
        layer.params["b"][...] = np.random.default_rng(1).standard_normal(units)
    return layer


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_gradcheck(use_bias):
    layer = built_dense(use_bias=use_bias)
    x = np.random.default_rng(2).standard_normal((4, 5))
    errors = check_layer(layer, x)
    assert set(errors) == ({"x", "W", "b"} if use_bias else {"x", "W"})
    assert max(errors.values()) < TOL, errors


def test_dense_shapes_dtype_and_params():
    layer = Dense(7)
    assert layer.build((12,), np.random.default_rng(0)) == (7,)
    assert layer.params["W"].shape == (12, 7) and layer.params["b"].shape == (7,)
    assert layer.params["W"].dtype == np.float32
    assert layer.n_params == 12 * 7 + 7
    assert layer.regularized == ("W",)
    y = layer.forward(np.ones((3, 12), dtype=np.float32))
    assert y.shape == (3, 7) and y.dtype == np.float32


def test_dense_forward_is_x_at_w_plus_b():
    layer = built_dense()
    x = np.random.default_rng(3).standard_normal((6, 5))
    np.testing.assert_allclose(layer.forward(x), x @ layer.params["W"] + layer.params["b"], rtol=1e-12)


def test_dense_first_layer_skips_input_gradient():
    layer = built_dense()
    layer.needs_input_grad = False
    x = np.random.default_rng(4).standard_normal((4, 5))
    layer.forward(x, training=True)
    g = np.ones((4, 3))
    assert layer.backward(g) is None
    np.testing.assert_allclose(layer.grads["W"], x.T @ g)


def test_dense_inference_caches_nothing():
    layer = built_dense()
    layer.forward(np.zeros((2, 5)), training=False)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.zeros((2, 3)))


def test_dense_parity_with_torch_linear():
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")
    layer = built_dense(n_in=6, units=4)
    x = np.random.default_rng(5).standard_normal((8, 6))
    g = np.random.default_rng(6).standard_normal((8, 4))

    linear = torch.nn.Linear(6, 4).double()
    with torch.no_grad():  # torch stores the transpose: weight is (out, in)
        linear.weight.copy_(torch.from_numpy(layer.params["W"].T))
        linear.bias.copy_(torch.from_numpy(layer.params["b"]))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = linear(xt)
    yt.backward(torch.from_numpy(g))

    y = layer.forward(x, training=True)
    gx = layer.backward(g)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.grads["W"], linear.weight.grad.numpy().T, rtol=1e-6)
    np.testing.assert_allclose(layer.grads["b"], linear.bias.grad.numpy(), rtol=1e-6)


def test_dense_rejects_image_input_and_suggests_flatten():
    with pytest.raises(ShapeError, match=r"Dense.*\(1, 28, 28\).*Flatten"):
        Dense(10).build((1, 28, 28), np.random.default_rng(0))


def test_dense_rejects_wrong_feature_count():
    layer = built_dense(n_in=5)
    with pytest.raises(ShapeError, match=r"Dense.*\(N, 5\).*\(4, 6\)"):
        layer.forward(np.zeros((4, 6)))


@pytest.mark.parametrize("kwargs, match", [
    ({"units": 0}, "units must be a positive integer, received 0"),
    ({"units": 2.5}, "received 2.5"),
    ({"units": 3, "kernel_initializer": "nope"}, "unknown initializer 'nope'"),
])
def test_dense_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Dense(**kwargs)


def test_dense_config_rebuilds_the_layer():
    layer = Dense(5, use_bias=False, kernel_initializer="he")
    clone = Dense(**layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build((3,), np.random.default_rng(0))
    assert set(clone.params) == {"W"}


def test_flatten_shape_view_and_gradcheck():
    layer = Flatten()
    assert layer.build((2, 3, 4), np.random.default_rng(0), dtype=np.float64) == (24,)
    x = np.random.default_rng(7).standard_normal((5, 2, 3, 4))
    y = layer.forward(x, training=True)
    assert y.shape == (5, 24)
    assert np.shares_memory(x, y)  # a view: nothing copied
    np.testing.assert_array_equal(y[1], x[1].ravel())  # C-order: channel, row, column
    assert layer.backward(y).shape == x.shape
    assert check_layer(layer, x)["x"] < TOL


def test_flatten_rejects_wrong_input_shape():
    layer = Flatten()
    layer.build((1, 28, 28), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"Flatten.*\(N, 1, 28, 28\).*\(2, 3, 28, 28\)"):
        layer.forward(np.zeros((2, 3, 28, 28)))
