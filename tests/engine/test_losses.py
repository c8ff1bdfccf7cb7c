"""Losses: gradient checks (plain and fused, labels and one-hot), parity with torch, bad input, registry."""

import warnings

import numpy as np
import pytest

from cnnlab.engine import losses
from cnnlab.engine.errors import CnnlabError, ConfigError, NumericalError, ShapeError
from cnnlab.engine.gradcheck import check_loss
from cnnlab.engine.layers import activations
from cnnlab.engine.layers.activations import sigmoid, softmax

N, K = 6, 4
TOL = 1e-6


def data(seed=0, n=N, k=K):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, k)) * 2
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    return logits, labels, onehot


def soft_targets(seed=0, n=N, k=K):
    """Rows of a probability distribution (one-hot is a special case) — the general 2-D target."""
    return softmax(np.random.default_rng(seed + 100).standard_normal((n, k)))


# -- gradient checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
def test_quadratic_gradcheck(target):
    logits, labels, onehot = data()
    y = {"labels": labels, "onehot": onehot, "soft": soft_targets()}[target]
    assert check_loss(losses.Quadratic(), sigmoid(logits), y) < TOL


@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
@pytest.mark.parametrize("fused", [False, True], ids=["probabilities", "logits"])
def test_bce_gradcheck(target, fused):
    logits, labels, onehot = data(1)
    y = {"labels": labels, "onehot": onehot, "soft": soft_targets(1)}[target]
    output = logits if fused else sigmoid(logits)
    assert check_loss(losses.BinaryCrossEntropy(), output, y, from_logits=fused) < TOL


def test_bce_single_output_unit_takes_0_1_labels():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((8, 1))
    labels = rng.integers(0, 2, 8)
    loss = losses.BinaryCrossEntropy()
    assert check_loss(loss, logits, labels, from_logits=True) < TOL
    np.testing.assert_allclose(loss.forward_from_logits(logits, labels),
                               loss.forward_from_logits(logits, labels.reshape(-1, 1).astype(float)))


@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
@pytest.mark.parametrize("fused", [False, True], ids=["probabilities", "logits"])
def test_softmax_crossentropy_gradcheck(target, fused):
    logits, labels, onehot = data(3)
    y = {"labels": labels, "onehot": onehot, "soft": soft_targets(3)}[target]
    # Probabilities near 0 would make the central difference of ln a itself inaccurate ((ε/a)² error).
    output = logits if fused else softmax(logits / 2)
    assert check_loss(losses.SoftmaxCrossEntropy(), output, y, from_logits=fused) < TOL


def test_fused_forms_agree_with_the_unfused_ones():
    logits, labels, _ = data(4)
    bce, ce = losses.BinaryCrossEntropy(), losses.SoftmaxCrossEntropy()
    np.testing.assert_allclose(bce.forward_from_logits(logits, labels), bce.forward(sigmoid(logits), labels),
                               rtol=1e-10)
    np.testing.assert_allclose(ce.forward_from_logits(logits, labels), ce.forward(softmax(logits), labels),
                               rtol=1e-10)
    # the fused gradient is the unfused one pushed through the activation's Jacobian
    p = softmax(logits)
    g = ce.grad(p, labels)
    chained = p * (g - (g * p).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ce.grad_from_logits(logits, labels), chained, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(ce.grad_from_logits(logits, labels), (p - np.eye(K)[labels]) / N, rtol=1e-12)


def test_fused_losses_are_stable_for_huge_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]], dtype=np.float32)
    labels = np.array([1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ce = losses.SoftmaxCrossEntropy().forward_from_logits(logits, labels)
        bce = losses.BinaryCrossEntropy().forward_from_logits(logits, np.eye(3)[labels])
        grad = losses.SoftmaxCrossEntropy().grad_from_logits(logits, labels)
    np.testing.assert_allclose(ce, 2000 / 2, rtol=1e-6)  # sample 0: −ln softmax = 2000; sample 1: ≈ 0
    np.testing.assert_allclose(bce, (1000 + 1000 + np.log(2) + 5 + np.log1p(np.exp(-5))) / 2, rtol=1e-5)
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad))


def test_probability_losses_clip_instead_of_returning_inf():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array([1, 1])
    assert np.isfinite(losses.SoftmaxCrossEntropy().forward(p, labels))
    assert np.all(np.isfinite(losses.SoftmaxCrossEntropy().grad(p, labels)))
    assert np.isfinite(losses.BinaryCrossEntropy().forward(p, labels))
    assert np.all(np.isfinite(losses.BinaryCrossEntropy().grad(p, labels)))


# -- parity with torch ---------------------------------------------------------------------------------
@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")


def torch_value_and_grad(torch, fn, output):
    t = torch.from_numpy(output).requires_grad_(True)
    value = fn(t)
    value.backward()
    return value.item(), t.grad.numpy()


def test_quadratic_matches_torch_mse(torch):
    logits, labels, onehot = data(5)
    a = sigmoid(logits)
    # MSELoss averages over N·K elements and has no ½: ours = MSE · K / 2
    fn = lambda t: torch.nn.functional.mse_loss(t, torch.from_numpy(onehot)) * K / 2  # noqa: E731
    value, grad = torch_value_and_grad(torch, fn, a)
    loss = losses.Quadratic()
    np.testing.assert_allclose(loss.forward(a, labels), value, rtol=1e-6)
    np.testing.assert_allclose(loss.grad(a, labels), grad, rtol=1e-6)


def test_bce_matches_torch(torch):
    logits, labels, onehot = data(6)
    target = torch.from_numpy(onehot)
    # BCELoss averages over N·K elements; ours sums over the K outputs and averages over N
    fn = lambda t: torch.nn.functional.binary_cross_entropy(t, target) * K  # noqa: E731
    value, grad = torch_value_and_grad(torch, fn, sigmoid(logits))
    loss = losses.BinaryCrossEntropy()
    np.testing.assert_allclose(loss.forward(sigmoid(logits), labels), value, rtol=1e-6)
    np.testing.assert_allclose(loss.grad(sigmoid(logits), labels), grad, rtol=1e-6)

    fn = lambda t: torch.nn.functional.binary_cross_entropy_with_logits(t, target) * K  # noqa: E731
    value, grad = torch_value_and_grad(torch, fn, logits)
    np.testing.assert_allclose(loss.forward_from_logits(logits, onehot), value, rtol=1e-6)
    np.testing.assert_allclose(loss.grad_from_logits(logits, onehot), grad, rtol=1e-6)


@pytest.mark.parametrize("target", ["labels", "soft"])
def test_crossentropy_matches_torch(torch, target):
    logits, labels, _ = data(7)
    y = labels if target == "labels" else soft_targets(7)
    yt = torch.from_numpy(y)  # int64 labels, or class probabilities (torch ≥ 1.10)
    fn = lambda t: torch.nn.functional.cross_entropy(t, yt)  # noqa: E731
    value, grad = torch_value_and_grad(torch, fn, logits)
    loss = losses.SoftmaxCrossEntropy()
    np.testing.assert_allclose(loss.forward_from_logits(logits, y), value, rtol=1e-6)
    np.testing.assert_allclose(loss.grad_from_logits(logits, y), grad, rtol=1e-6)
    np.testing.assert_allclose(loss.forward(softmax(logits), y), value, rtol=1e-6)


# -- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [losses.Quadratic(), losses.BinaryCrossEntropy(), losses.SoftmaxCrossEntropy()],
                         ids=lambda loss: loss.name)
def test_bad_targets_name_the_loss_and_the_shapes(loss):
    a = softmax(np.zeros((4, 3)))
    with pytest.raises(ShapeError, match=rf"{loss.name}: expected one-hot targets of shape \(4, 3\).*\(4, 5\)"):
        loss.forward(a, np.zeros((4, 5)))
    with pytest.raises(ShapeError, match=rf"{loss.name}: expected integer labels of shape \(4,\).*\(5,\)"):
        loss.grad(a, np.zeros(5, dtype=int))
    with pytest.raises(ShapeError, match=r"expected labels in \[0, 2\].*from 0 to 3"):
        loss.forward(a, np.array([0, 1, 2, 3]))
    with pytest.raises(ShapeError, match=r"from -1 to 1"):
        loss.forward(a, np.array([0, 1, -1, 1]))
    with pytest.raises(ShapeError, match=r"expected integer class labels, received dtype float64"):
        loss.forward(a, np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ShapeError, match=r"expected network output of shape \(N, K\), received \(4,\)"):
        loss.forward(a[:, 0], np.array([0, 1, 0, 1]))


def test_crossentropy_with_one_output_rejects_label_1():
    with pytest.raises(ShapeError, match=r"labels in \[0, 0\]"):
        losses.SoftmaxCrossEntropy().forward_from_logits(np.zeros((2, 1)), np.array([0, 1]))


@pytest.mark.parametrize("method", ["forward", "forward_from_logits"])
def test_nan_loss_raises_numerical_error(method):
    logits, labels, _ = data(8)
    logits[2, 1] = np.nan
    loss = losses.SoftmaxCrossEntropy()
    with pytest.raises(NumericalError, match=r"SoftmaxCrossEntropy: the loss is nan"):
        getattr(loss, method)(logits, labels)
    with pytest.raises(NumericalError, match="inf"):
        losses.Quadratic().forward(np.full((2, 2), np.inf), np.array([0, 1]))
    assert issubclass(NumericalError, CnnlabError)


# -- registry ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("quadratic", losses.Quadratic), ("mse", losses.Quadratic),
    ("binary-crossentropy", losses.BinaryCrossEntropy), ("bce", losses.BinaryCrossEntropy),
    ("crossentropy", losses.SoftmaxCrossEntropy), ("softmax-crossentropy", losses.SoftmaxCrossEntropy),
    ("ce", losses.SoftmaxCrossEntropy), ("CE", losses.SoftmaxCrossEntropy),
])
def test_get_loss(name, cls):
    assert type(losses.get_loss(name)) is cls


def test_get_loss_unknown_lists_names_and_passes_instances_through():
    with pytest.raises(ConfigError, match=r"unknown loss 'hinge'; expected one of: quadratic, mse, .*ce"):
        losses.get_loss("hinge")
    loss = losses.Quadratic()
    assert losses.get_loss(loss) is loss


def test_fused_activation_names_an_activation_layer():
    assert losses.Quadratic.fused_activation is None
    for cls in (losses.BinaryCrossEntropy, losses.SoftmaxCrossEntropy):
        layer_cls = getattr(activations, cls.fused_activation)
        assert layer_cls.__name__ == cls.fused_activation
