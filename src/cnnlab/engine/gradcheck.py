"""Finite-difference gradient checks: the proof that every hand-written backward pass is right.

For a layer ``y = f(x; θ)`` we pick a fixed random tensor ``R`` shaped like ``y`` and check the scalar
``L = Σ y ⊙ R``. Its analytic gradients come from ``backward(R)``; its numerical gradients from central
differences ``(L(t + ε) − L(t − ε)) / 2ε``, one element at a time, in float64. Central differences have
error O(ε²), so with ε = 1e-6 a correct backward pass agrees to about 1e-7 relative error or better.

For large tensors we check a random sample of elements; the worst relative error per tensor is reported.
"""

from __future__ import annotations

import numpy as np


def relative_error(analytic, numeric, floor: float = 1e-3) -> np.ndarray:
    """|a − n| / max(|a| + |n|, floor), elementwise.

    Relative for ordinary gradients; the floor turns it into an absolute error for gradients near zero,
    where the round-off of the central difference (about 1e-10 × |L|) would otherwise dominate.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)


def _sample_indices(shape, max_elements: int, rng: np.random.Generator):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= max_elements else rng.choice(size, max_elements, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


def numerical_gradient(loss_fn, tensor: np.ndarray, indices, eps: float = 1e-6) -> np.ndarray:
    """Central-difference dL/dtensor at ``indices`` (perturbing ``tensor`` in place, then restoring it)."""
    grads = np.empty(len(indices), dtype=np.float64)
    for k, idx in enumerate(indices):
        original = tensor[idx]
        tensor[idx] = original + eps
        plus = loss_fn()
        tensor[idx] = original - eps
        minus = loss_fn()
        tensor[idx] = original
        grads[k] = (plus - minus) / (2 * eps)
    return grads


def check_layer(layer, x: np.ndarray, rng: np.random.Generator | None = None, eps: float = 1e-6,
                max_elements: int = 200) -> dict[str, float]:
    """Worst relative error of ``layer``'s gradients w.r.t. its input (key ``"x"``) and each parameter.

    ``layer`` must be built with float64 parameters and ``x`` must be float64. The layer's forward pass
    must be deterministic in training mode (layers with randomness, like Dropout, fix their mask first).
    """
    rng = rng or np.random.default_rng(0)
    x = np.array(x, dtype=np.float64)
    y = layer.forward(x, training=True)
    weights = rng.standard_normal(y.shape)

    def loss() -> float:
        return float(np.sum(layer.forward(x, training=True) * weights))

    loss()  # refresh caches for the unperturbed input before backward
    grad_x = layer.backward(weights.astype(x.dtype))
    analytic = {"x": np.array(grad_x)}
    analytic.update({name: np.array(g) for name, g in layer.grads.items()})

    tensors = {"x": x, **layer.params}
    errors = {}
    for name, tensor in tensors.items():
        idx = _sample_indices(tensor.shape, max_elements, rng)
        numeric = numerical_gradient(loss, tensor, idx, eps)
        got = np.array([analytic[name][i] for i in idx])
        errors[name] = float(relative_error(got, numeric).max()) if idx else 0.0
    return errors


def check_loss(loss, output: np.ndarray, target, eps: float = 1e-6, from_logits: bool = False) -> float:
    """Worst relative error of a loss's gradient w.r.t. the network output (or logits when fused)."""
    output = np.array(output, dtype=np.float64)
    forward = loss.forward_from_logits if from_logits else loss.forward
    gradient = loss.grad_from_logits if from_logits else loss.grad

    def value() -> float:
        return float(forward(output, target))

    analytic = np.array(gradient(output, target))
    idx = _sample_indices(output.shape, 10_000, np.random.default_rng(0))
    numeric = numerical_gradient(value, output, idx, eps)
    got = np.array([analytic[i] for i in idx])
    return float(relative_error(got, numeric).max())


def check_model(model, x: np.ndarray, y, loss, eps: float = 1e-6, max_elements: int = 20,
                rng: np.random.Generator | None = None) -> dict[str, float]:
    """Worst relative error of every parameter gradient of a whole model, per layer.

    The model must be built in float64. Backpropagation through the model (as in training, including a
    fused final activation) is compared with central differences of the mean loss over the batch, on up to
    ``max_elements`` sampled entries of each parameter tensor. Layers with randomness (Dropout) are made
    deterministic by re-using the same mask on every forward pass.
    """
    rng = rng or np.random.default_rng(0)
    x = np.asarray(x, dtype=np.float64)
    random_layers = [layer for layer in model.layers if hasattr(layer, "freeze_mask")]
    stop = model.fused_stop(loss)

    def value() -> float:
        out = model.forward(x, training=True, stop=stop)
        return float(loss.value(out, y, from_logits=stop is not None))

    for layer in random_layers:  # draw one mask, then keep it for every evaluation below
        layer.freeze_mask(False)
    out = model.forward(x, training=True, stop=stop)
    for layer in random_layers:
        layer.freeze_mask(True)
    grad = loss.value_and_grad(out, y, from_logits=stop is not None)[1]
    model.forward(x, training=True, stop=stop)
    model.backward(grad, stop=stop)

    worst: dict[str, float] = {}
    for name, layer, key in model.parameters():
        param = layer.params[key]
        analytic = np.array(layer.grads[key])
        idx = _sample_indices(param.shape, max_elements, rng)
        numeric = numerical_gradient(value, param, idx, eps)
        got = np.array([analytic[i] for i in idx])
        label = f"{layer.name} ({layer.kind})"
        worst[label] = max(worst.get(label, 0.0), float(relative_error(got, numeric).max()))
    for layer in random_layers:
        layer.freeze_mask(False)
    return worst
