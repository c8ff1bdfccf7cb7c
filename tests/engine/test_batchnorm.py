"""BatchNorm after a convolution (4-D) and after a dense layer (2-D): gradients, PyTorch parity, buffers."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.normalization import BatchNorm

SHAPES = {"after-conv": (4, 3, 3, 3), "after-dense": (6, 5)}


def built(per_sample_shape, seed=0, dtype=np.float64, **kwargs):
    layer = BatchNorm(**kwargs)
    layer.build(per_sample_shape, np.random.default_rng(seed), dtype=dtype)
    rng = np.random.default_rng(seed + 1)  # non-trivial gamma/beta so their gradients are all exercised
    channels = per_sample_shape[0]
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, channels)
    layer.params["beta"][...] = rng.standard_normal(channels)
    return layer


@pytest.mark.parametrize("where", SHAPES)
def test_gradcheck(where):
    shape = SHAPES[where]
    layer = built(shape[1:])
    x = np.random.default_rng(2).standard_normal(shape) * 2 + 1
    errors = check_layer(layer, x)
    assert set(errors) == {"x", "gamma", "beta"}
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("where", SHAPES)
def test_training_output_is_normalized_per_channel(where):
    shape = SHAPES[where]
    layer = BatchNorm()
    layer.build(shape[1:], np.random.default_rng(0), dtype=np.float64)
    y = layer.forward(np.random.default_rng(3).standard_normal(shape) * 4 + 7, training=True)
    axes = (0, 2, 3) if len(shape) == 4 else (0,)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=axes), 1, rtol=1e-3)  # 1 − ε/σ², not exactly 1


def torch_batchnorm(torch, layer, ndim):
    cls = torch.nn.BatchNorm2d if ndim == 4 else torch.nn.BatchNorm1d
    bn = cls(layer.params["gamma"].size, eps=layer.eps, momentum=layer.momentum).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(layer.params["gamma"]))
        bn.bias.copy_(torch.from_numpy(layer.params["beta"]))
    return bn


@pytest.mark.parametrize("where", SHAPES)
def test_parity_with_torch_train_and_eval(where):
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")
    shape = SHAPES[where]
    layer = built(shape[1:], momentum=0.2, eps=1e-3)
    bn = torch_batchnorm(torch, layer, len(shape))
    rng = np.random.default_rng(4)
    for step in range(3):  # running statistics accumulate over several steps
        x = rng.standard_normal(shape) * (step + 1) + step
        g = rng.standard_normal(shape)
        xt = torch.from_numpy(x).requires_grad_(True)
        bn.train()
        bn.zero_grad()
        yt = bn(xt)
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(layer.forward(x, training=True), yt.detach().numpy(), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(layer.grads["gamma"], bn.weight.grad.numpy(), rtol=1e-6)
        np.testing.assert_allclose(layer.grads["beta"], bn.bias.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.buffers["running_mean"], bn.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.buffers["running_var"], bn.running_var.numpy(), rtol=1e-6)

    bn.eval()
    x = rng.standard_normal(shape)
    with torch.no_grad():
        expected = bn(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-6, atol=1e-10)


def test_running_var_uses_unbiased_variance():
    layer = BatchNorm(momentum=1.0)  # running stats = the last batch's
    layer.build((2,), np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((10, 2))
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["running_var"], x.var(axis=0, ddof=1))


def test_inference_uses_running_stats_and_ignores_the_batch():
    layer = built((3, 4, 4))
    rng = np.random.default_rng(6)
    for _ in range(5):
        layer.forward(rng.standard_normal((8, 3, 4, 4)) + 2, training=True)
    running = {k: v.copy() for k, v in layer.buffers.items()}
    batch = rng.standard_normal((5, 3, 4, 4))
    alone = layer.forward(batch[:1], training=False)
    np.testing.assert_allclose(layer.forward(batch, training=False)[:1], alone, rtol=1e-12)
    for key, value in running.items():  # inference never touches the buffers
        np.testing.assert_array_equal(layer.buffers[key], value)


def test_buffers_are_not_parameters():
    layer = BatchNorm()
    layer.build((16, 5, 5), np.random.default_rng(0))
    assert set(layer.params) == {"gamma", "beta"} and set(layer.grads) == {"gamma", "beta"}
    assert set(layer.buffers) == {"running_mean", "running_var"}
    assert layer.regularized == ()
    assert all(b.dtype == np.float32 and b.shape == (16,) for b in layer.buffers.values())
    y = layer.forward(np.ones((2, 16, 5, 5), dtype=np.float32), training=True)
    assert y.dtype == np.float32


def test_one_value_per_channel_cannot_train():
    layer = BatchNorm()
    layer.build((4,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"more than one value per channel.*\(1, 4\)"):
        layer.forward(np.ones((1, 4), dtype=np.float32), training=True)
    assert layer.forward(np.ones((1, 4), dtype=np.float32)).shape == (1, 4)  # inference is fine


def test_bad_shapes_and_arguments():
    with pytest.raises(ShapeError, match=r"BatchNorm.*\(D,\).*\(C, H, W\).*\(3, 4\)"):
        BatchNorm().build((3, 4), np.random.default_rng(0))
    layer = BatchNorm()
    layer.build((3, 4, 4), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"\(N, 3, 4, 4\).*\(2, 2, 4, 4\)"):
        layer.forward(np.ones((2, 2, 4, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match="momentum"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ConfigError, match="eps must be a positive number, received 0"):
        BatchNorm(eps=0)


def test_config_rebuilds():
    layer = BatchNorm(momentum=0.05, eps=1e-4)
    assert BatchNorm(**layer.get_config()).get_config() == {"momentum": 0.05, "eps": 1e-4}
