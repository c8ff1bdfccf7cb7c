"""Whole networks against PyTorch: same weights, same batch -> same logits, gradients and updates."""

import numpy as np
import pytest

from cnnlab.training.presets import build
from cnnlab.engine.losses import get_loss
from cnnlab.engine.optim import SGD, Adam

torch = pytest.importorskip("torch", reason="parity tests need torch (pip install -e '.[test]')")
from cnnlab.interop.torch_bridge import to_torch, torch_grads_by_cnnlab_name  # noqa: E402


@pytest.mark.parametrize("arch,shape,options", [
    ("lenet5", (1, 28, 28), {}), ("vgg-mini", (1, 16, 16), {}),
    ("cnn-bn", (3, 12, 12), {"dropout": 0.0}),  # dropout masks are random in both: switch it off
    ("mlp:784-30-10", (1, 28, 28), {}),
])
def test_logits_and_every_gradient_match_torch(arch, shape, options):
    model = build(arch, input_shape=shape, seed=0, dtype=np.float64, **options)
    reference = to_torch(model)
    reference.train()
    rng = np.random.default_rng(0)
    x, y = rng.random((4, *shape)), np.array([3, 1, 4, 1])

    loss = get_loss("crossentropy")
    stop = len(model.layers) - 1 if model.layers[-1].kind == "Softmax" else None
    if stop is None:  # the MLP ends in a sigmoid: compare with the quadratic cost on its outputs
        loss = get_loss("quadratic")
    ours_out = model.forward(x, training=True, stop=stop)
    value = loss.forward_from_logits(ours_out, y) if stop else loss.forward(ours_out, y)
    model.backward(loss.grad_from_logits(ours_out, y) if stop else loss.grad(ours_out, y), stop=stop)

    theirs_out = reference(torch.tensor(x))
    if stop:
        theirs_loss = torch.nn.functional.cross_entropy(theirs_out, torch.tensor(y))
    else:
        one_hot = torch.nn.functional.one_hot(torch.tensor(y), 10).double()
        theirs_loss = 0.5 * ((theirs_out - one_hot) ** 2).sum(dim=1).mean()
    theirs_loss.backward()

    np.testing.assert_allclose(ours_out, theirs_out.detach().numpy(), rtol=1e-6, atol=1e-10)
    assert value == pytest.approx(theirs_loss.item(), rel=1e-9)
    theirs_grads = torch_grads_by_cnnlab_name(model, reference)
    for name, layer, key in model.parameters():
        np.testing.assert_allclose(layer.grads[key], theirs_grads[name], rtol=1e-6, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("make_ours,make_theirs", [
    (lambda: Adam(lr=1e-3), lambda p: torch.optim.Adam(p, lr=1e-3)),
    (lambda: SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3)),
])
def test_several_training_steps_stay_equal_to_torch(make_ours, make_theirs):
    model = build("lenet5", input_shape=(1, 16, 16), seed=1, dtype=np.float64)
    reference = to_torch(model)
    # PyTorch decays every parameter it is given; cnnlab decays weights only. Give torch two groups.
    weights = [m.weight for m in reference if hasattr(m, "weight")]
    biases = [m.bias for m in reference if getattr(m, "bias", None) is not None]
    theirs_opt = make_theirs(weights)
    theirs_opt.add_param_group({"params": biases, "weight_decay": 0.0})
    ours_opt, loss = make_ours(), get_loss("crossentropy")
    rng = np.random.default_rng(2)
    for _ in range(4):
        x, y = rng.random((8, 1, 16, 16)), rng.integers(0, 10, 8)
        model.train_step(x, y, loss, ours_opt)
        theirs_opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(y)).backward()
        theirs_opt.step()
    final = to_torch(model)
    for ours, theirs in zip(final.parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-10)
