"""Saliency, SmoothGrad and Grad-CAM from cnnlab's own backward pass (cnnlab.explain)."""

import numpy as np
import pytest

from cnnlab.engine.errors import ConfigError
from cnnlab.engine.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Softmax
from cnnlab.engine.model import Sequential
from cnnlab.explain import grad_cam, input_gradient, last_conv_block, logits_stop, saliency, smoothgrad
from cnnlab.training.presets import build


def explained_model(dtype=np.float64):
    """A small CNN with BatchNorm (non-trivial running statistics) and Dropout, float64."""
    layers = [Conv2D(4, 3, padding=1), BatchNorm(), ReLU(), MaxPool2D(2), Conv2D(6, 3, padding=1), ReLU(),
              Flatten(), Dropout(0.5), Dense(5), Softmax()]
    model = Sequential(layers, (1, 8, 8), seed=0, dtype=dtype)
    bn = model.layers[1]
    rng = np.random.default_rng(1)
    bn.buffers["running_mean"][...] = rng.normal(0, 0.3, 4)
    bn.buffers["running_var"][...] = rng.uniform(0.5, 2.0, 4)
    bn.params["gamma"][...] = rng.uniform(0.5, 1.5, 4)
    return model


def images(n=3, seed=0):
    return np.random.default_rng(seed).random((n, 1, 8, 8))


def test_input_gradient_equals_finite_differences_of_the_class_logit():
    model, x = explained_model(), images()
    classes = np.array([0, 3, 4])
    grad = input_gradient(model, x, classes)
    stop = logits_stop(model)
    assert stop == len(model.layers) - 1 and grad.shape == x.shape

    def score(z):
        return model.forward(z, stop=stop)[np.arange(len(z)), classes]  # inference: dropout off, running stats

    eps = 1e-6
    for index in [(0, 0, 3, 4), (1, 0, 0, 0), (2, 0, 7, 1), (1, 0, 5, 5)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (score(plus) - score(minus))[index[0]] / (2 * eps)
        assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_explanations_use_the_inference_network_and_change_nothing():
    model, x = explained_model(), images()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    first = input_gradient(model, x, 2)
    np.testing.assert_array_equal(input_gradient(model, x, 2), first)  # no dropout mask drawn
    for key, value in model.state_dict().items():  # running statistics untouched
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert model.layers[0].needs_input_grad is False  # restored
    s = saliency(model, x, 2)
    np.testing.assert_allclose(s, np.abs(first).max(axis=1))


def test_smoothgrad_averages_noisy_saliency_and_is_seeded():
    model, x = explained_model(), images(2)
    a, b = smoothgrad(model, x, 1, samples=4, seed=3), smoothgrad(model, x, 1, samples=4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 8, 8) and (a >= 0).all()
    np.testing.assert_allclose(smoothgrad(model, x, 1, samples=1, noise=0.0), saliency(model, x, 1))
    with pytest.raises(ConfigError, match="samples"):
        smoothgrad(model, x, 1, samples=0)


def test_grad_cam_matches_a_pytorch_reference_on_the_same_weights():
    torch = pytest.importorskip("torch", reason="torch is a test extra (PyTorch parity)")
    from cnnlab.interop.torch_bridge import to_torch

    model = build("lenet5", seed=0, dtype=np.float64)
    model.layers[-2].params["W"] *= 3  # sharper logits
    x = np.random.default_rng(2).random((4, 1, 28, 28))
    classes = np.array([1, 7, 3, 3])
    ours = grad_cam(model, x, classes)
    index = last_conv_block(model)
    assert ours.index == index and model.layers[index - (model.layers[index].kind != "Conv2D")].kind == "Conv2D"

    net = to_torch(model, dtype=torch.float64).eval()  # the logits: the final Softmax is left out
    assert len(net) == len(model.layers) - 1
    kept = {}
    net[index].register_forward_hook(lambda module, inputs, output: kept.update(a=output) or output.retain_grad())
    scores = net(torch.from_numpy(x))
    scores[torch.arange(4), torch.from_numpy(classes)].sum().backward()
    a, g = kept["a"].detach().numpy(), kept["a"].grad.numpy()
    weights = g.mean(axis=(2, 3))
    reference = np.maximum(np.einsum("nk,nkhw->nhw", weights, a), 0)
    np.testing.assert_allclose(ours.weights, weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.maps, reference, rtol=1e-9, atol=1e-12)
    assert ours.maps.max() > 0
    up = ours.upsampled((28, 28))
    assert up.shape == (4, 28, 28) and up.min() >= 0 and up.max() == pytest.approx(1.0)


def test_bad_requests_are_one_line_errors():
    model = explained_model()
    with pytest.raises(ConfigError, match="class must be between 0 and 4"):
        saliency(model, images(1), 7)
    with pytest.raises(ConfigError, match="Grad-CAM needs a convolutional layer"):
        grad_cam(build("mlp", seed=0), np.zeros((1, 1, 28, 28)), 0)


def test_show_saliency_draws_the_bundled_model_on_an_example(tmp_path):
    from importlib import resources

    from click.testing import CliRunner
    from PIL import Image

    from cnnlab.inspect_cli import show

    seven = str(resources.files("cnnlab") / "examples" / "seven.png")
    out = tmp_path / "why.png"
    result = CliRunner().invoke(show, ["saliency", seven, "-o", str(out), "--class", "1", "--samples", "3"])
    assert result.exit_code == 0, result.output
    assert "predicted 7" in result.output
    with Image.open(out) as picture:
        assert picture.size[0] > 400 and picture.size[1] > 300  # two rows of four panels
    bad = CliRunner().invoke(show, ["saliency", seven, "-o", str(tmp_path / "x.png"), "--class", "12"])
    assert bad.exit_code != 0 and "--class must be between 0 and 10" in str(bad.exception or bad.output)  # 11 classes: "not a digit" too
