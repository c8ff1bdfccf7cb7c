"""Why this answer: saliency, SmoothGrad and Grad-CAM, computed with cnnlab's own backward pass.

All three backpropagate through the *inference* network — dropout off, BatchNorm with its running
statistics — so they explain the prediction the model actually makes (``forward(..., keep_cache=True)``
keeps what ``backward`` needs without switching to training behaviour). The score explained is the class's
*logit* ``z_c`` (the input of the final softmax), as in the papers: the softmax couples every class, its
derivative mostly says "less of the others".

* **Saliency** (Simonyan, Vedaldi & Zisserman 2014): ``|∂z_c/∂x|``, the pixels whose change would change
  the score most; the maximum over colour channels.
* **SmoothGrad** (Smilkov et al. 2017): the mean saliency over copies of the input with Gaussian noise
  (σ = ``noise`` × the input's range) — less speckled, the same idea.
* **Grad-CAM** (Selvaraju et al. 2017): on the feature maps ``A^k`` of the last convolution block, the
  weights ``α_k = mean over positions of ∂z_c/∂A^k`` and the map ``ReLU(Σ_k α_k A^k)``: where the evidence
  for the class lies, at that layer's resolution (upsampled to the input for display).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine.backend import to_numpy
from .engine.errors import ConfigError

#: Layers whose output counts as "the last convolution block" (a convolution and what follows it before
#: the next pooling or dense layer: activation, BatchNorm).
BLOCK_KINDS = ("Conv2D", "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "BatchNorm")


def logits_stop(model) -> int:
    """Index where the class scores are: before a final Softmax or Sigmoid, else the whole model."""
    last = model.layers[-1].kind
    return len(model.layers) - 1 if last in ("Softmax", "Sigmoid") else len(model.layers)


def _check_classes(model, classes, n: int) -> np.ndarray:
    num_classes = int(model.output_shape[-1])
    classes = np.broadcast_to(np.asarray(classes, dtype=np.int64), (n,))
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ConfigError(f"class must be between 0 and {num_classes - 1}, received {sorted(set(classes.tolist()))}")
    return classes


def _score_gradient(scores, classes):
    """dz_c/dz: one 1 per row, at the row's class ``(N, K)``."""
    grad = np.zeros_like(to_numpy(scores))
    grad[np.arange(len(grad)), classes] = 1
    return grad


def input_gradient(model, x, classes) -> np.ndarray:
    """``∂z_c/∂x`` for a batch ``x`` ``(N, *input_shape)``, class ``classes`` (one int or ``(N,)``):
    the gradient of each sample's class logit with respect to its input, same shape as ``x``."""
    x = model.prepare_input(x)
    classes = _check_classes(model, classes, len(x))
    stop = logits_stop(model)
    first = model.layers[0]
    wanted = first.needs_input_grad
    first.needs_input_grad = True  # normally skipped: nobody trains the data
    try:
        scores = model.forward(x, stop=stop, keep_cache=True)
        grad = model.backward(_score_gradient(scores, classes).astype(model.dtype), stop=stop)
    finally:
        first.needs_input_grad = wanted
    return to_numpy(grad)


def saliency(model, x, classes) -> np.ndarray:
    """``max over channels |∂z_c/∂x|``: ``(N, H, W)`` for image inputs (``(N, D)`` for flat ones)."""
    grad = np.abs(input_gradient(model, x, classes))
    return grad.max(axis=1) if grad.ndim == 4 else grad


def smoothgrad(model, x, classes, samples: int = 25, noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """The mean :func:`saliency` of ``samples`` noisy copies of each input (σ = ``noise`` × its range)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be a positive integer, received {samples!r}")
    if not noise >= 0:
        raise ConfigError(f"noise must be a number >= 0, received {noise!r}")
    x = np.asarray(to_numpy(model.prepare_input(x)))
    rng = np.random.default_rng(seed)
    axes = tuple(range(1, x.ndim))
    sigma = noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))
    total = None
    for _ in range(samples):
        noisy = (x + sigma * rng.standard_normal(x.shape)).astype(model.dtype)
        s = saliency(model, noisy, classes)
        total = s if total is None else total + s
    return total / samples


def last_conv_block(model) -> int:
    """Index of the layer whose output is the last convolution block's feature maps (see BLOCK_KINDS)."""
    convs = [i for i, layer in enumerate(model.layers) if layer.kind == "Conv2D"]
    if not convs:
        kinds = ", ".join(layer.kind for layer in model.layers)
        raise ConfigError(f"Grad-CAM needs a convolutional layer; this model has: {kinds}")
    end = convs[-1]
    while end + 1 < len(model.layers) and model.layers[end + 1].kind in BLOCK_KINDS[1:]:
        end += 1
    return end


@dataclass
class GradCam:
    """Grad-CAM of a batch: ``maps`` ``(N, h, w)`` at the layer's resolution, ``weights`` ``(N, K)``
    (``α_k``), the layer explained (``layer``: its name, ``index``)."""

    maps: np.ndarray
    weights: np.ndarray
    layer: str
    index: int

    def upsampled(self, size) -> np.ndarray:
        """``maps`` resized to ``size = (H, W)`` (bilinear), each scaled to [0, 1] (0 stays 0)."""
        from scipy.ndimage import zoom

        h, w = self.maps.shape[1:]
        out = np.stack([zoom(m, (size[0] / h, size[1] / w), order=1) for m in self.maps])
        peak = out.max(axis=(1, 2), keepdims=True)
        return np.where(peak > 0, np.clip(out, 0, None) / np.where(peak > 0, peak, 1), 0.0)


def grad_cam(model, x, classes, layer: int | None = None) -> GradCam:
    """Grad-CAM for a batch ``x`` ``(N, C, H, W)`` on the output of layer ``layer`` (default: the last
    convolution block): ``ReLU(Σ_k α_k A^k)`` with ``α_k`` the spatial mean of ``∂z_c/∂A^k``."""
    x = model.prepare_input(x)
    classes = _check_classes(model, classes, len(x))
    index = last_conv_block(model) if layer is None else int(layer)
    stop = logits_stop(model)
    if not 0 <= index < stop or model.layers[index].output_shape is None or len(model.layers[index].output_shape) != 3:
        raise ConfigError(f"Grad-CAM needs a layer with (C, H, W) outputs before the scores, received index {layer!r}")
    out = x
    for i, item in enumerate(model.layers[:stop]):
        out = item.forward(out, keep_cache=i > index)  # only the layers above A are backpropagated through
        if i == index:
            activations = out
    grad = _score_gradient(out, classes).astype(model.dtype)
    for item in reversed(model.layers[index + 1:stop]):
        grad = item.backward(grad)
    a, g = to_numpy(activations), to_numpy(grad)
    weights = g.mean(axis=(2, 3))  # (N, K): α_k, global-average-pooled gradients
    maps = np.maximum(np.einsum("nk,nkhw->nhw", weights, a), 0)
    return GradCam(maps, weights, model.layers[index].name, index)
