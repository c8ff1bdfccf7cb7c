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
