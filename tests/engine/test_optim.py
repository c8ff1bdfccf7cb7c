"""Optimizers and schedules: parity with torch.optim, the classic L2 rule, state, dtypes, bad arguments."""

import math

import numpy as np
import pytest

from cnnlab.engine import optim
from cnnlab.engine.errors import ConfigError, ShapeError

STEPS = 5


def make_params(dtype=np.float64):
    rng = np.random.default_rng(0)
    return {"0.W": rng.standard_normal((3, 4)).astype(dtype), "0.b": rng.standard_normal(4).astype(dtype)}


def gradient_sequence(params, steps=STEPS):
    """The same gradients for both implementations: fresh random ones at every step."""
    rng = np.random.default_rng(1)
    return [{k: rng.standard_normal(p.shape) for k, p in params.items()} for _ in range(steps)]


def run_cnnlab(opt, params, grads):
    for g in grads:
        opt.step([(name, p, g[name].astype(p.dtype), name.endswith("W")) for name, p in params.items()])
    return params


def run_torch(torch, make_opt, params, grads, weight_decay):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    groups = [{"params": [tensors["0.W"]], "weight_decay": weight_decay},  # biases are not decayed
              {"params": [tensors["0.b"]], "weight_decay": 0.0}]
    opt = make_opt(groups)
    for g in grads:
        for name, t in tensors.items():
            t.grad = torch.from_numpy(g[name])
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


CASES = {
    "sgd": (lambda: optim.SGD(0.1), lambda t, g: t.optim.SGD(g, lr=0.1), 0.0),
    "sgd-decay": (lambda: optim.SGD(0.1, weight_decay=0.05), lambda t, g: t.optim.SGD(g, lr=0.1), 0.05),
    "momentum": (lambda: optim.SGD(0.1, momentum=0.9), lambda t, g: t.optim.SGD(g, lr=0.1, momentum=0.9), 0.0),
    "momentum-decay": (lambda: optim.SGD(0.05, momentum=0.8, weight_decay=0.01),
                       lambda t, g: t.optim.SGD(g, lr=0.05, momentum=0.8), 0.01),
    "nesterov": (lambda: optim.SGD(0.1, momentum=0.9, nesterov=True),
                 lambda t, g: t.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True), 0.0),
    "nesterov-decay": (lambda: optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.02),
                       lambda t, g: t.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True), 0.02),
    "adam": (lambda: optim.Adam(0.01), lambda t, g: t.optim.Adam(g, lr=0.01), 0.0),
    "adam-betas-decay": (lambda: optim.Adam(0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
                         lambda t, g: t.optim.Adam(g, lr=0.02, betas=(0.8, 0.99), eps=1e-6), 0.1),
    "adamw": (lambda: optim.AdamW(0.01, weight_decay=0.1), lambda t, g: t.optim.AdamW(g, lr=0.01), 0.1),
}


@pytest.mark.parametrize("case", CASES)
def test_parity_with_torch_optim(case):
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")
    make_ours, make_theirs, weight_decay = CASES[case]
    params = make_params()
    grads = gradient_sequence(params)
    expected = run_torch(torch, lambda groups: make_theirs(torch, groups), params, grads, weight_decay)
    got = run_cnnlab(make_ours(), {k: v.copy() for k, v in params.items()}, grads)
    for name in params:
        assert not np.allclose(got[name], params[name])  # it moved
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, atol=1e-12, err_msg=name)


def test_plain_sgd_by_hand():
    w = np.array([1.0, -2.0])
    optim.SGD(0.5).step([("w", w, np.array([0.2, 0.4]), True)])
    np.testing.assert_allclose(w, [0.9, -2.2])


def test_classic_l2_rule_is_weight_decay_lambda_over_n():
    """Nielsen: w → (1 − ηλ/n) w − (η/m) Σ_x ∂C_x/∂w, with the loss averaged over the mini-batch."""
    eta, lmbda, n_train, m = 0.5, 5.0, 1000, 10
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3))
    per_example = rng.standard_normal((m, 4, 3))  # ∂C_x/∂w for each x of the mini-batch
    expected = (1 - eta * lmbda / n_train) * w - (eta / m) * per_example.sum(axis=0)
    assert optim.classic_l2(lmbda, n_train) == lmbda / n_train
    opt = optim.SGD(eta, weight_decay=optim.classic_l2(lmbda, n_train))
    opt.step([("w", w, per_example.mean(axis=0), True)])
    np.testing.assert_allclose(w, expected, rtol=1e-12)


def test_weight_decay_only_where_decay_is_true():
    w, b = np.ones(3), np.ones(3)
    zero = np.zeros(3)
    optim.SGD(0.1, weight_decay=0.5).step([("w", w, zero, True), ("b", b, zero, False)])
    np.testing.assert_allclose(w, 0.95)
    np.testing.assert_array_equal(b, 1.0)


@pytest.mark.parametrize("opt", [optim.SGD(0.1, momentum=0.9, nesterov=True), optim.Adam(), optim.AdamW()],
                         ids=["sgd", "adam", "adamw"])
def test_updates_in_place_with_float32_state(opt):
    params = make_params(np.float32)
    originals = {k: v for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    run_cnnlab(opt, params, gradient_sequence(params, 2))
    for name, p in params.items():
        assert p is originals[name] and p.dtype == np.float32
        assert not np.array_equal(p, before[name])
        for value in opt.state[name].values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32 and value.shape == p.shape
    assert set(opt.state) == set(params)  # state keyed by the dotted names, created lazily


def test_state_is_created_lazily_and_gradients_are_not_modified():
    opt = optim.SGD(0.1, momentum=0.9, weight_decay=0.1)
    assert opt.state == {}
    w, g = np.ones(2), np.full(2, 0.5)
    opt.step([("a", w, g, True)])
    assert list(opt.state) == ["a"]
    np.testing.assert_array_equal(g, 0.5)  # the layer's gradient array is left alone


def test_gradient_shape_mismatch():
    with pytest.raises(ShapeError, match=r"gradient of '0.W' has shape \(2,\), expected .* \(3,\)"):
        optim.SGD(0.1).step([("0.W", np.zeros(3), np.zeros(2), True)])


@pytest.mark.parametrize("make, match", [
    (lambda: optim.SGD(0), r"SGD: lr must be a number in \(0.0, inf\), received 0"),
    (lambda: optim.SGD(-1.0), "received -1.0"),
    (lambda: optim.SGD(0.1, momentum=1.0), r"momentum must be a number in \[0.0, 1.0\), received 1.0"),
    (lambda: optim.SGD(0.1, nesterov=True), "nesterov=True needs a momentum > 0"),
    (lambda: optim.SGD(0.1, weight_decay=-0.1), "weight_decay"),
    (lambda: optim.Adam(betas=(0.9,)), "betas must be a pair"),
    (lambda: optim.Adam(betas=(0.9, 1.0)), "beta2"),
    (lambda: optim.Adam(eps=0), "eps"),
    (lambda: optim.classic_l2(-1, 100), "classic_l2"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


# -- registry ------------------------------------------------------------------------------------------
def test_get_optimizer():
    opt = optim.get_optimizer("momentum", lr=0.05)
    assert isinstance(opt, optim.SGD) and opt.momentum == 0.9 and opt.lr == 0.05
    assert optim.get_optimizer("momentum", lr=0.05, momentum=0.5).momentum == 0.5
    assert optim.get_optimizer("sgd", lr=0.1).momentum == 0.0
    assert optim.get_optimizer("nesterov", lr=0.1).nesterov
    adam = optim.get_optimizer("adam")
    assert isinstance(adam, optim.Adam) and adam.lr == 1e-3
    assert isinstance(optim.get_optimizer("AdamW", weight_decay=0.0), optim.AdamW)


def test_get_optimizer_errors():
    with pytest.raises(ConfigError, match=r"unknown optimizer 'rmsprop'; expected one of: sgd, momentum"):
        optim.get_optimizer("rmsprop")
    with pytest.raises(ConfigError, match="'sgd' needs a learning rate"):
        optim.get_optimizer("sgd")
    with pytest.raises(ConfigError, match="optimizer 'adam'.*momentum"):
        optim.get_optimizer("adam", momentum=0.9)


# -- schedules -----------------------------------------------------------------------------------------
def test_constant_and_step_schedules():
    assert [optim.ConstantLR(0.1)(e) for e in (0, 5, 100)] == [0.1, 0.1, 0.1]
    step = optim.StepLR(1.0, step_size=3, gamma=0.5)
    assert [step(e) for e in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_cosine_schedule():
    cosine = optim.CosineLR(0.1, total_epochs=10, min_lr=0.01)
    assert cosine(0) == pytest.approx(0.1)
    assert cosine(5) == pytest.approx(0.055)
    assert cosine(10) == pytest.approx(0.01) and cosine(50) == pytest.approx(0.01)
    values = [cosine(e) for e in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_schedules_match_torch():
    torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e .[test])")
    for ours, make_theirs in [
        (optim.StepLR(0.1, 3, 0.3), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.3)),
        (optim.CosineLR(0.1, 8, 0.001), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.001)),
    ]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make_theirs(opt)
        for epoch in range(9):
            assert ours(epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), (ours, epoch)
            opt.step()
            theirs.step()


def test_get_schedule_and_bad_schedules():
    assert isinstance(optim.get_schedule("cosine", 0.1, total_epochs=5), optim.CosineLR)
    assert optim.get_schedule("step", 0.1, step_size=2)(2) == pytest.approx(0.01)
    with pytest.raises(ConfigError, match=r"unknown schedule 'linear'; expected one of: constant, step, cosine"):
        optim.get_schedule("linear", 0.1)
    with pytest.raises(ConfigError, match="step_size must be a positive integer, received 0"):
        optim.StepLR(0.1, 0)
    with pytest.raises(ConfigError, match="total_epochs"):
        optim.CosineLR(0.1, 0)
    with pytest.raises(ConfigError, match="min_lr"):
        optim.CosineLR(0.1, 5, min_lr=0.2)
    assert math.isclose(optim.CosineLR(0.1, 5)(5), 0.0, abs_tol=1e-15)
