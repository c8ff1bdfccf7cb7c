"""Activation layers: gradient checks, parity with torch, numerical stability, caching rules."""

import warnings

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.activations import ELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, sigmoid, softmax

# Central differences on Σ y ⊙ R over a few hundred elements carry round-off of about 1e-9 absolute, i.e.
# up to ~1e-6 relative on the smallest gradients; a wrong derivative is off by 1e-2 or more.
TOL = 1e-5
# Factories, not instances: every test gets a fresh, unbuilt layer.
ELEMENTWISE = [ReLU, lambda: LeakyReLU(0.1), lambda: ELU(0.7), Sigmoid, Tanh]
ALL = ELEMENTWISE + [Softmax]
IDS = ["ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softmax"]


def away_from_kink(shape, seed=0):
    """Random inputs with |x| ≥ 0.05, so finite differences never straddle ReLU's kink at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.05 * np.sign(x) + 0.05 * (x == 0), x)


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_gradcheck(make):
    layer = make()
    shape = (4, 3, 5, 5) if layer.kind != "Softmax" else (6, 7)
    layer.build(shape[1:], np.random.default_rng(0), dtype=np.float64)
    errors = check_layer(layer, away_from_kink(shape))
    assert errors["x"] < TOL, errors


def torch_reference(torch, kind):
    F = torch.nn.functional
    return {"ReLU": F.relu, "LeakyReLU": lambda t: F.leaky_relu(t, 0.1), "ELU": lambda t: F.elu(t, 0.7),
            "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softmax": lambda t: F.softmax(t, dim=-1)}[kind]


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_parity_with_torch(make):
    layer = make()
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")
    x = away_from_kink((5, 8), seed=1) * 3
    g = np.random.default_rng(2).standard_normal((5, 8))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch_reference(torch, layer.kind)(xt)
    yt.backward(torch.from_numpy(g))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_sigmoid_is_stable_for_large_inputs():
    for dtype in (np.float32, np.float64):
        x = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4], dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an overflow in exp would raise here
            s = sigmoid(x)
        assert s.dtype == dtype
        assert np.all(np.isfinite(s)) and np.all((s >= 0) & (s <= 1))
        assert s[0] == 0 and s[3] == 0.5 and s[-1] == 1
        np.testing.assert_allclose(s[2], 1 / (1 + np.exp(30.0)), rtol=1e-5)  # tiny, but not rounded to 0


def test_softmax_is_stable_and_normalized():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = softmax(x)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], softmax(np.array([0.0, 1.0, 2.0])), rtol=1e-6)
    assert p[1, 2] == 1


def test_elu_does_not_overflow_on_large_positive_inputs():
    layer = ELU()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer.forward(np.array([[1e4, -1e4]]))
    np.testing.assert_allclose(y, [[1e4, -1.0]])


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_float32_stays_float32(make):
    layer = make()
    x = away_from_kink((3, 4)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize("layer_cls", [ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax])
def test_inference_caches_nothing(layer_cls):
    layer = layer_cls()
    layer.forward(np.ones((2, 3)), training=False)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((2, 3)))


def test_wrong_input_shape_names_the_layer():
    layer = ReLU(name="act1")
    layer.build((4,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"ReLU 'act1'.*\(N, 4\).*\(2, 5\)"):
        layer.forward(np.ones((2, 5)))


@pytest.mark.parametrize("cls", [LeakyReLU, ELU])
def test_bad_alpha(cls):
    with pytest.raises(ConfigError, match=r"alpha must be a non-negative number, received -1"):
        cls(alpha=-1)


def test_configs_rebuild():
    assert LeakyReLU(**LeakyReLU(0.2).get_config()).alpha == 0.2
    assert ELU(**ELU(0.5).get_config()).alpha == 0.5
    assert ReLU().get_config() == {}
