"""Conv2D: naive-loop reference, finite-difference gradients, PyTorch parity, bad inputs, config, float32."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_layer
from cnnlab.engine.layers.conv import Conv2D


# -- a clear, slow reference: the definitions written as loops ---------------------------------------------
def pad_amounts(layer):
    return layer.geometry.pad_h, layer.geometry.pad_w


def naive_conv(x, w, b, stride, pad_h, pad_w):
    """y[n, f, u, v] = b[f] + Σ_{c,i,j} w[f, c, i, j] x_pad[n, c, u*s + i, v*s + j]."""
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    n, _, hp, wp = xp.shape
    f, _, kh, kw = w.shape
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    y = np.zeros((n, f, ho, wo))
    for m in range(n):
        for k in range(f):
            for u in range(ho):
                for v in range(wo):
                    patch = xp[m, :, u * stride:u * stride + kh, v * stride:v * stride + kw]
                    y[m, k, u, v] = np.sum(patch * w[k]) + b[k]
    return y


def naive_conv_backward(x, w, dy, stride, pad_h, pad_w):
    """Each output value sends dy back to the weights (times the input) and to the inputs (times the weights)."""
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    f, _, kh, kw = w.shape
    for m in range(dy.shape[0]):
        for k in range(f):
            for u in range(dy.shape[2]):
                for v in range(dy.shape[3]):
                    rows, cols = slice(u * stride, u * stride + kh), slice(v * stride, v * stride + kw)
                    dw[k] += dy[m, k, u, v] * xp[m, :, rows, cols]
                    dxp[m, :, rows, cols] += dy[m, k, u, v] * w[k]
    h, wd = x.shape[2:]
    return dxp[:, :, pad_h[0]:pad_h[0] + h, pad_w[0]:pad_w[0] + wd], dw, dy.sum(axis=(0, 2, 3))


CASES = [  # (input (N, C, H, W), Conv2D kwargs)
    ((2, 1, 6, 6), dict(filters=2, kernel_size=3)),
    ((2, 3, 7, 9), dict(filters=4, kernel_size=3, padding=1)),
    ((3, 2, 7, 9), dict(filters=3, kernel_size=3, stride=2, padding=1)),
    ((2, 3, 8, 7), dict(filters=2, kernel_size=5, padding=2)),
    ((2, 2, 7, 9), dict(filters=3, kernel_size=3, padding="same")),
    ((2, 2, 6, 7), dict(filters=2, kernel_size=(4, 2), padding="same")),
    ((2, 2, 9, 8), dict(filters=2, kernel_size=(3, 5), stride=2, padding=(2, 1))),
    ((1, 5, 5, 5), dict(filters=6, kernel_size=5)),
]


def build(kwargs, shape, dtype=np.float64, seed=0):
    layer = Conv2D(**kwargs)
    layer.build(shape[1:], np.random.default_rng(seed), dtype=dtype)
    if layer.use_bias:  # non-zero biases, so a bias bug cannot hide behind zeros
        layer.params["b"][...] = np.random.default_rng(seed + 1).standard_normal(layer.params["b"].shape)
    return layer


@pytest.mark.parametrize(("shape", "kwargs"), CASES, ids=[str(c[1]) for c in CASES])
def test_forward_and_backward_match_the_naive_reference(shape, kwargs):
    rng = np.random.default_rng(5)
    layer = build(kwargs, shape)
    x = rng.standard_normal(shape)
    y = layer.forward(x, training=True)
    expected = naive_conv(x, layer.params["W"], layer.params["b"], layer.stride[0], *pad_amounts(layer))
    assert y.shape == (shape[0], *layer.output_shape)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)

    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dx_ref, dw_ref, db_ref = naive_conv_backward(x, layer.params["W"], dy, layer.stride[0], *pad_amounts(layer))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], dw_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], db_ref, rtol=1e-10, atol=1e-12)


def test_input_gradient_is_the_full_convolution_with_rotated_kernels():
    """The textbook form of dL/dx (stride 1, no padding): Σ_f full cross-correlation of δ_f with rot180(W_fc)."""
    rng = np.random.default_rng(6)
    layer = build(dict(filters=3, kernel_size=(3, 2)), (2, 2, 6, 5))
    x = rng.standard_normal((2, 2, 6, 5))
    dy = rng.standard_normal((2, *layer.output_shape))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    w = layer.params["W"]
    kh, kw = w.shape[2:]
    dy_full = np.pad(dy, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    rotated = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, kh, kw): channels in and out swapped
    expected = naive_conv(dy_full, rotated, np.zeros(2), 1, (0, 0), (0, 0))
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("shape", "kwargs"), CASES, ids=[str(c[1]) for c in CASES])
def test_gradients_match_finite_differences(shape, kwargs):
    layer = build(kwargs, shape)
    x = np.random.default_rng(7).standard_normal(shape)
    # The layer is linear in x and in W, so central differences have no truncation error and a larger
    # step (1e-4) only reduces round-off.
    errors = check_layer(layer, x, eps=1e-4)
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize(("shape", "kwargs"), CASES, ids=[str(c[1]) for c in CASES])
def test_parity_with_pytorch(shape, kwargs):
    torch = pytest.importorskip("torch", reason="PyTorch is only needed for the parity check")
    rng = np.random.default_rng(8)
    layer = build(kwargs, shape)
    (top, bottom), (left, right) = pad_amounts(layer)
    module = torch.nn.Conv2d(shape[1], layer.filters, layer.kernel_size, stride=layer.stride).double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["W"]))
        module.bias.copy_(torch.from_numpy(layer.params["b"]))
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = module(torch.nn.functional.pad(xt, (left, right, top, bottom)))  # explicit, possibly uneven padding
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.from_numpy(dy))

    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(layer.grads["W"], module.weight.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(layer.grads["b"], module.bias.grad.numpy(), rtol=1e-6, atol=1e-12)


def test_float32_end_to_end_and_buffers_reused_across_batch_sizes():
    rng = np.random.default_rng(9)
    layer = build(dict(filters=4, kernel_size=3, padding="same"), (5, 3, 8, 8), dtype=np.float32)
    ref = build(dict(filters=4, kernel_size=3, padding="same"), (5, 3, 8, 8), dtype=np.float64)
    for n in (5, 5, 2, 5):  # same size twice (buffers reused), then a short last batch, then back
        x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
        y = layer.forward(x, training=True)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy)
        assert y.dtype == dx.dtype == layer.grads["W"].dtype == layer.grads["b"].dtype == np.float32
        y_ref = ref.forward(x.astype(np.float64), training=True)
        dx_ref = ref.backward(dy.astype(np.float64))
        np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.grads["W"], ref.grads["W"], rtol=1e-4, atol=1e-4)


def test_inference_forward_does_not_disturb_the_training_cache():
    rng = np.random.default_rng(10)
    layer = build(dict(filters=2, kernel_size=3, padding=1), (2, 2, 5, 5))
    x, other = rng.standard_normal((2, 2, 2, 5, 5))
    dy = rng.standard_normal((2, 2, 5, 5))
    layer.forward(x, training=True)
    layer.backward(dy)
    expected = layer.grads["W"].copy()
    layer.forward(x, training=True)
    layer.forward(other[:1], training=False)  # e.g. a validation batch between forward and backward
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads["W"], expected)


def test_first_layer_skips_the_input_gradient():
    rng = np.random.default_rng(11)
    layer = build(dict(filters=3, kernel_size=3), (2, 1, 6, 6))
    x = rng.standard_normal((2, 1, 6, 6))
    dy = rng.standard_normal((2, 3, 4, 4))
    layer.forward(x, training=True)
    layer.backward(dy)
    expected = layer.grads["W"].copy()
    layer.needs_input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(dy) is None
    np.testing.assert_array_equal(layer.grads["W"], expected)


def test_without_bias():
    layer = build(dict(filters=2, kernel_size=3, use_bias=False), (2, 2, 5, 5))
    assert set(layer.params) == {"W"} and layer.n_params == 2 * 2 * 3 * 3
    x = np.random.default_rng(12).standard_normal((2, 2, 5, 5))
    np.testing.assert_allclose(layer.forward(x), naive_conv(x, layer.params["W"], np.zeros(2), 1, (0, 0), (0, 0)))
    assert max(check_layer(layer, x, eps=1e-4).values()) < 1e-6


def test_shapes_parameters_and_config_round_trip():
    layer = Conv2D(16, 5, padding=2, name="conv1")
    assert layer.build((3, 28, 28), np.random.default_rng(0)) == (16, 28, 28)
    assert layer.params["W"].shape == (16, 3, 5, 5) and layer.params["b"].shape == (16,)
    assert layer.params["W"].dtype == np.float32 and Conv2D.regularized == ("W",)
    assert np.allclose(layer.params["W"].std(), np.sqrt(2 / 75), rtol=0.1)  # "he" by default
    config = layer.get_config()
    assert config == {"filters": 16, "kernel_size": [5, 5], "stride": [1, 1], "padding": [2, 2], "use_bias": True,
                      "kernel_initializer": "he", "bias_initializer": "zeros"}
    again = Conv2D(**config)
    assert again.build((3, 28, 28), np.random.default_rng(0)) == (16, 28, 28)
    np.testing.assert_array_equal(again.params["W"], layer.params["W"])
    assert Conv2D(**Conv2D(8, 3, padding="same").get_config()).padding == "same"
    assert Conv2D(4, (3, 5), stride=2).build((1, 9, 11), np.random.default_rng(0)) == (4, 4, 4)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(filters=0, kernel_size=3), "filters must be a positive integer, received 0"),
    (dict(filters=2.5, kernel_size=3), "received 2.5"),
    (dict(filters=4, kernel_size=0), "kernel_size must be a positive integer or a pair of them, received 0"),
    (dict(filters=4, kernel_size=(3, 3, 3)), r"received \(3, 3, 3\)"),
    (dict(filters=4, kernel_size=3, stride=0), "stride must be .*received 0"),
    (dict(filters=4, kernel_size=3, stride=(1, 2)), r"equal strides .*received \(1, 2\)"),
    (dict(filters=4, kernel_size=3, padding=-1), "padding must be .*received -1"),
    (dict(filters=4, kernel_size=3, padding="valid"), "padding must be 'same'.*received 'valid'"),
    (dict(filters=4, kernel_size=3, stride=2, padding="same"), "'same' needs stride 1"),
    (dict(filters=4, kernel_size=3, kernel_initializer="bogus"), "unknown initializer 'bogus'"),
])
def test_bad_arguments_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Conv2D(**kwargs)


def test_kernel_larger_than_input_raises_at_build():
    layer = Conv2D(4, 7, name="big")
    with pytest.raises(ConfigError, match=r"Conv2D 'big': kernel 7x7 is larger than the padded input 5x5"):
        layer.build((1, 5, 5), np.random.default_rng(0))


def test_wrong_input_raises_shape_error_naming_layer_and_shapes():
    layer = Conv2D(4, 3, name="conv1")
    layer.build((3, 8, 8), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"Conv2D 'conv1': expected input of shape \(N, 3, 8, 8\), "
                                         r"received \(2, 1, 8, 8\)"):
        layer.forward(np.zeros((2, 1, 8, 8), np.float32))  # wrong channel count
    with pytest.raises(ShapeError, match=r"received \(3, 8, 8\)"):
        layer.forward(np.zeros((3, 8, 8), np.float32))  # no batch axis
    with pytest.raises(ShapeError, match=r"expected images \(C, H, W\) per sample, received \(784,\)"):
        Conv2D(4, 3, name="c").build((784,), np.random.default_rng(0))
    layer.forward(np.zeros((2, 3, 8, 8), np.float32), training=True)
    with pytest.raises(ShapeError, match=r"expected a gradient of shape \(2, 4, 6, 6\), received \(2, 4, 8, 8\)"):
        layer.backward(np.zeros((2, 4, 8, 8), np.float32))


def test_backward_before_forward_is_a_clear_error():
    layer = Conv2D(2, 3)
    layer.build((1, 5, 5), np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(np.zeros((1, 2, 3, 3)))
