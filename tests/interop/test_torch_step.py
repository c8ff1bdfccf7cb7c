"""TorchStep: the same fit with PyTorch computing each step gives the same weights as cnnlab's own step."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch peer step needs torch (pip install -e '.[test]')")

from cnnlab.engine.errors import ConfigError  # noqa: E402
from cnnlab.engine.optim import SGD, Optimizer  # noqa: E402
from cnnlab.interop.torch_step import TorchStep  # noqa: E402
from cnnlab.training.loop import fit  # noqa: E402
from cnnlab.training.presets import build  # noqa: E402


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (120, 28, 28)).astype(np.uint8), rng.integers(0, 10, 120)


def _fit(arch, data, step_with=None, **options):
    model = build(arch, seed=1, dtype=np.float64, **options.pop("build", {}))
    settings = dict(epochs=2, batch_size=40, optimizer="adam", lr=1e-3, progress=False, verbose=False, seed=5,
                    divergence=False) | options
    if callable(settings["optimizer"]):  # a fresh optimizer object per run: they keep state
        settings["optimizer"] = settings["optimizer"]()
    history = fit(model, data, step_with=step_with, **settings)
    return model, history


@pytest.mark.parametrize("arch, options", [
    ("lenet5", {}),
    ("lenet5", {"build": {"activation": "relu", "pooling": "max"}, "optimizer": "sgd", "lr": 0.05,
                "schedule": lambda epoch: 0.05 / (epoch + 1)}),
    ("course-cnn", {"loss": "quadratic", "optimizer": "sgd", "lr": 0.4, "batch_size": 1}),
    ("mlp:784-30-10", {"loss": "binary-crossentropy", "optimizer": lambda: SGD(0.5, momentum=0.9, weight_decay=1e-3)}),
])
def test_same_weights_as_cnnlab_step(images, arch, options):
    data = (images[0][:40], images[1][:40]) if options.get("batch_size") == 1 else images
    ours, history = _fit(arch, data, **dict(options))
    peer, peer_history = _fit(arch, data, step_with=TorchStep, **dict(options))
    for name, value in ours.state_dict().items():
        np.testing.assert_allclose(peer.state_dict()[name], value, rtol=1e-7, atol=1e-9, err_msg=name)
    np.testing.assert_allclose([r["train_cost"] for r in peer_history.rows],
                               [r["train_cost"] for r in history.rows], rtol=1e-9)
    assert [r["lr"] for r in peer_history.rows] == [r["lr"] for r in history.rows]


def test_batchnorm_statistics_come_back(images):
    # cnn-bn has Dropout, whose masks PyTorch draws itself: the weights differ, but the running statistics
    # the model evaluates with must be PyTorch's, copied back after every step.
    model, _ = _fit("cnn-bn", images, step_with=lambda m: _Keep(TorchStep(m)), epochs=1)
    step = _Keep.last
    state = model.state_dict()
    peer = {k: v.detach().numpy() for k, v in step.net.state_dict().items()}
    # every cnnlab BatchNorm buffer equals one of PyTorch's (same order of layers)
    ours = [v for k, v in state.items() if k.endswith("running_var")]
    theirs = [v for k, v in peer.items() if k.endswith("running_var")]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(ours[0], 1.0)  # they moved away from their initial value: copied, not left


class _Keep:
    """Wraps a step and remembers it, so the test can look at the PyTorch network after fit."""

    last = None

    def __init__(self, step):
        self.step = _Keep.last = step
        self.net = None

    def train_step(self, *args):
        result = self.step.train_step(*args)
        self.net = self.step.net
        return result

    def __getattr__(self, name):
        return getattr(self.step, name)


def test_unknown_optimizer_is_refused(images):
    class Lion(Optimizer):
        def update(self, name, param, grad, weight_decay):
            param -= self.lr * np.sign(grad)

    with pytest.raises(ConfigError, match="no PyTorch counterpart for the optimizer Lion"):
        _fit("lenet5", images, step_with=TorchStep, optimizer=lambda: Lion(0.01))


def test_gpu_device_is_refused(images):
    with pytest.raises(ConfigError, match="CPU only"):
        _fit("lenet5", images, step_with=TorchStep, device="gpu")
