"""Sequential model and architecture presets: shapes, parameter counts, training, strictness."""

import re

import numpy as np
import pytest

from cnnlab.training.presets import build, parse_arch
from cnnlab.engine.errors import ConfigError, ShapeError
from cnnlab.engine.gradcheck import check_model
from cnnlab.engine.losses import get_loss
from cnnlab.engine.optim import SGD, Adam


def param_column(summary: str) -> list[str]:
    """The 'Param #' column of a summary table, one entry per layer row."""
    return [line.split()[-1] for line in summary.splitlines() if re.match(r"^\S+ \(\w+\)\s+\(None", line)]


def test_keras_mnist_summary_counts():
    text = build("keras-mnist").summary()
    counts = [c for c in param_column(text) if c != "0"]
    assert counts == ["320", "18,496", "16,010"]
    assert "Total params: 34,826" in text


def test_lenet5_and_vgg_mini_totals():
    assert build("lenet5").n_params == 61_706
    assert "Total params: 61,706" in build("lenet5").summary()
    assert build("vgg-mini").n_params == 218_490
    assert build("mlp:784-30-10").n_params == 23_860


def test_output_shapes_follow_the_formula():
    model = build("lenet5")
    shapes = [layer.output_shape for layer in model.layers]
    assert shapes[0] == (6, 28, 28)    # (28 - 5 + 2*2)/1 + 1
    assert shapes[2] == (6, 14, 14)    # (28 - 2)/2 + 1
    assert shapes[3] == (16, 10, 10)   # (14 - 5)/1 + 1
    assert model.output_shape == (10,)


def test_presets_build_for_cifar_shapes():
    model = build("vgg-mini", input_shape=(3, 32, 32), num_classes=10)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    assert model.predict_proba(x).shape == (2, 10)


def test_unknown_arch_and_bad_mlp_sizes_are_clear():
    with pytest.raises(ConfigError, match="unknown architecture 'resnet'"):
        build("resnet")
    with pytest.raises(ConfigError, match="784 inputs"):
        build("mlp:100-30-10")
    assert parse_arch("mlp:784-100-10") == ("mlp", {"sizes": (100,), "_io": (784, 10)})


def test_predict_proba_is_a_distribution_and_predict_its_argmax():
    model = build("keras-mnist", seed=1)
    x = np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32)
    p = model.predict_proba(x, batch_size=3)
    assert p.shape == (7, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x), p.argmax(axis=1))


def test_inference_is_deterministic_even_with_dropout():
    model = build("keras-mnist", seed=1)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict_proba(x), model.predict_proba(x))


def test_wrong_input_shape_and_dtype_are_reported():
    model = build("lenet5")
    with pytest.raises(ShapeError, match=r"expected shape \(N, 1, 28, 28\), received \(2, 3, 28, 28\)"):
        model.predict(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ShapeError, match="floating point"):
        model.predict(np.zeros((2, 1, 28, 28), np.uint8))


def test_training_steps_fit_a_small_batch():
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 28, 28), dtype=np.float32)
    y = np.arange(20) % 10
    model = build("lenet5", seed=0)
    loss, opt = get_loss("crossentropy"), Adam(lr=3e-3)
    first, _ = model.train_step(x, y, loss, opt)
    for _ in range(60):
        last, logits = model.train_step(x, y, loss, opt)
    assert last < 0.1 * first
    assert (logits.argmax(axis=1) == y).all()


def test_same_seed_same_weights_different_seed_different():
    a, b, c = build("lenet5", seed=3), build("lenet5", seed=3), build("lenet5", seed=4)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name])
    assert not np.array_equal(a.state_dict()["layers.0.W"], c.state_dict()["layers.0.W"])


def test_config_round_trip_rebuilds_the_same_function():
    model = build("vgg-mini", seed=2)
    clone = type(model).from_config(model.get_config(), seed=99)
    clone.load_state_dict(model.state_dict())
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict_proba(x), clone.predict_proba(x))


def test_load_state_dict_is_strict():
    model = build("lenet5")
    state = dict(model.state_dict())
    state["layers.0.W"] = np.zeros((6, 1, 3, 3), np.float32)
    with pytest.raises(ShapeError, match=r"layers.0.W: expected shape \(6, 1, 5, 5\)"):
        model.load_state_dict(state)
    del state["layers.0.W"]
    with pytest.raises(ShapeError, match="missing"):
        model.load_state_dict(state)


@pytest.mark.parametrize("arch", ["mlp:784-30-10", "lenet5", "vgg-mini", "keras-mnist", "cnn-bn"])
def test_every_preset_passes_the_gradient_check(arch):
    model = build(arch, input_shape=(1, 12, 12) if arch != "mlp:784-30-10" else (1, 28, 28),
                  seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    x = rng.random((3, *model.input_shape))
    y = np.array([1, 5, 9])
    loss = get_loss("quadratic" if arch.startswith("mlp") else "crossentropy")
    errors = check_model(model, x, y, loss, max_elements=6, rng=rng)
    assert max(errors.values()) < 1e-6, errors


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    model = build("lenet5", input_shape=(1, 12, 12), seed=0, dtype=np.float64)
    dense = next(layer for layer in model.layers if layer.kind == "Dense")
    original = dense.backward

    def off_by_a_bit(grad):
        out = original(grad)
        dense.grads["W"] = dense.grads["W"] * 1.01
        return out

    monkeypatch.setattr(dense, "backward", off_by_a_bit)
    rng = np.random.default_rng(1)
    errors = check_model(model, rng.random((2, 1, 12, 12)), np.array([0, 3]), get_loss("crossentropy"),
                         max_elements=5, rng=rng)
    assert errors[f"{dense.name} (Dense)"] > 1e-3


def test_sgd_weight_decay_reproduces_the_classic_l2_rule():
    """w -> (1 - eta*lambda/n) w - (eta/m) sum dC/dw, with the loss averaged over the mini-batch."""
    model = build("mlp:784-30-10", seed=0, dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = rng.random((10, 1, 28, 28)), rng.integers(0, 10, 10)
    eta, lmbda, n = 0.5, 5.0, 50_000
    w_before = model.layers[1].params["W"].copy()
    b_before = model.layers[1].params["b"].copy()
    loss = get_loss("quadratic")
    model.train_step(x, y, loss, SGD(lr=eta, weight_decay=lmbda / n))
    grad_w = model.layers[1].grads["W"]
    np.testing.assert_allclose(model.layers[1].params["W"], (1 - eta * lmbda / n) * w_before - eta * grad_w)
    np.testing.assert_allclose(model.layers[1].params["b"], b_before - eta * model.layers[1].grads["b"])


def test_a_model_too_large_to_allocate_is_refused_before_any_allocation():
    """``mlp:784-1000000000-10`` would ask for 2.9 TiB of weights (a MemoryError once the allocation fails):
    a ConfigError naming the layer instead, raised before the layer builds."""
    with pytest.raises(ConfigError, match=r"Dense 'dense_1': the model would have more than 268,435,456 parameters"):
        build("mlp:784-1000000000-10")
