"""Dropout: identity when it should be, unbiased in expectation, reproducible masks, gradient check."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.dropout import Dropout


def test_rate_zero_is_identity_in_training():
    layer = Dropout(0.0, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(layer.forward(x, training=True), x)
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g), g)


def test_inference_is_identity():
    layer = Dropout(0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    assert layer.forward(x, training=False) is x  # not even a copy


def test_mean_is_preserved_in_expectation():
    rate = 0.3
    layer = Dropout(rate, seed=1)
    x = np.ones((400, 500), dtype=np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)  # survivors are scaled up
    assert abs(kept.mean() - (1 - rate)) < 0.005  # 200 000 draws: std of the fraction ≈ 0.001
    assert abs(y.mean() - 1.0) < 0.01


def test_backward_uses_the_forward_mask():
    layer = Dropout(0.5, seed=2)
    x = np.random.default_rng(3).standard_normal((6, 7)) + 5  # never exactly 0
    y = layer.forward(x, training=True)
    g = np.random.default_rng(4).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), g * (y != 0) * 2.0)


def test_mask_reproducible_from_seed():
    x = np.ones((8, 10))
    a = Dropout(0.5, seed=7).forward(x, training=True)
    b = Dropout(0.5, seed=7).forward(x, training=True)
    c = Dropout(0.5, seed=8).forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    layer = Dropout(0.5, seed=7)
    first = layer.forward(x, training=True)
    assert not np.array_equal(layer.forward(x, training=True), first)  # a fresh mask every step
    layer.reseed(7)
    np.testing.assert_array_equal(layer.forward(x, training=True), first)


def test_unseeded_layer_draws_from_the_model_generator():
    x = np.ones((8, 10))
    masks = []
    for _ in range(2):
        layer = Dropout(0.5)
        layer.build((10,), np.random.default_rng(123))
        masks.append(layer.forward(x, training=True))
    np.testing.assert_array_equal(masks[0], masks[1])


def test_fixed_mask_makes_forward_deterministic_and_passes_gradcheck():
    layer = Dropout(0.4, seed=5)
    layer.build((3, 4, 4), np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 4))
    layer.freeze_mask(True)
    first = layer.forward(x, training=True)
    np.testing.assert_array_equal(layer.forward(x, training=True), first)
    assert check_layer(layer, x)["x"] < 1e-6
    layer.freeze_mask(False)
    assert not np.array_equal(layer.forward(x, training=True), first)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5", True])
def test_bad_rate(rate):
    with pytest.raises(ConfigError, match=r"rate must be a number in \[0, 1\)"):
        Dropout(rate)


def test_wrong_input_shape():
    layer = Dropout(0.5)
    layer.build((10,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"Dropout.*\(N, 10\).*\(3, 11\)"):
        layer.forward(np.ones((3, 11)), training=True)


def test_config_rebuilds():
    layer = Dropout(0.25, seed=3)
    assert Dropout(**layer.get_config()).get_config() == {"rate": 0.25, "seed": 3}
