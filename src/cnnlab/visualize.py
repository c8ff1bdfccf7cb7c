"""Looking inside a network: the first layer's filters, and the feature maps one picture produces.

* :func:`filters_figure` draws the kernels of a convolution ``(F, C, kh, kw)`` as a grid of small images.
  Trained first-layer filters of an MNIST network look like stroke detectors: oriented edges and bars.
  Weights are signed, so one-channel kernels use a diverging colour map (blue negative, red positive,
  white zero) on a scale shared by all filters — a weak filter looks pale, a strong one saturated.
  Three-channel kernels (CIFAR) are drawn as colours, each stretched to the full range.
* :func:`feature_maps_figure` shows the input picture and then, for every convolution block, the maps it
  outputs ``(C, H', W')``: where in the picture each filter responded. Maps are non-negative after ReLU,
  signed after tanh, so each map is stretched to its own range (gray, bright = strong response).

Like :mod:`cnnlab.plots`, the builders return a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot) and
never write files; :func:`cnnlab.plots.save_figure` writes one.
"""

from __future__ import annotations

import math

import numpy as np

from .engine.backend import to_numpy
from .engine.errors import ConfigError, ShapeError
from .plots import _figure


def first_conv_weights(model) -> tuple[str, np.ndarray]:
    """``(layer name, W (F, C, kh, kw))`` of the model's first Conv2D; ConfigError for a model without one."""
    for layer in model.layers:
        if layer.kind == "Conv2D":
            return layer.name, to_numpy(layer.params["W"])
    kinds = ", ".join(layer.kind for layer in model.layers)
    raise ConfigError(f"this model has no convolutional layer to show filters of (its layers: {kinds})")


def _grid(count: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(count, max_cols))
    return -(-count // cols), cols  # ceil(count / cols) rows


def _stretch(a: np.ndarray) -> np.ndarray:
    """Values linearly mapped to [0, 1] (a constant array becomes 0.5)."""
    low, high = float(a.min()), float(a.max())
    return np.full(a.shape, 0.5) if high <= low else (a - low) / (high - low)


def filters_figure(weights, title: str | None = None, max_filters: int = 64, max_cols: int = 8):
    """Grid of convolution kernels ``weights`` ``(F, C, kh, kw)`` (at most ``max_filters`` of them).

    One channel: each kernel in a diverging colour map on one shared symmetric scale, with a colour bar.
    Three channels: each kernel as an RGB picture stretched to [0, 1]. Other channel counts: the mean over
    the channels (said in the title).
    """
    w = np.asarray(to_numpy(weights), dtype=np.float64)
    if w.ndim != 4:
        raise ShapeError(f"filters_figure: expected weights of shape (F, C, kh, kw), received {w.shape}")
    f, c = w.shape[:2]
    shown = w[:max_filters]
    note = ""
    if c not in (1, 3):
        shown, note = shown.mean(axis=1, keepdims=True), f" (mean over {c} input channels)"
    rows, cols = _grid(len(shown), max_cols)
    fig = _figure(1.0 * cols + (1.0 if shown.shape[1] == 1 else 0.3), 1.0 * rows + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    limit = float(np.abs(shown).max()) or 1.0
    image = None
    for ax in axes:
        ax.set_axis_off()
    for i, (ax, kernel) in enumerate(zip(axes, shown)):
        if kernel.shape[0] == 1:
            image = ax.imshow(kernel[0], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        else:
            ax.imshow(np.moveaxis(_stretch(kernel), 0, -1), interpolation="nearest")
        ax.set_title(str(i), fontsize=7, pad=2)
    if image is not None:
        fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="weight")
    more = f", first {len(shown)} shown" if f > len(shown) else ""
    kh, kw = w.shape[2:]
    fig.suptitle(title or f"{f} filters {kh}x{kw}{more}{note}")
    return fig


def feature_maps_figure(image, maps, max_maps: int = 32, max_cols: int = 16, title: str | None = None):
    """The input ``image`` and the feature maps of each convolution block for that one picture.

    ``image``: ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``. ``maps``: what
    :meth:`cnnlab.engine.model.Sequential.feature_maps` returns, ``[(layer_name, (1, C, H', W')) or (C, H', W')]``.
    Each block is a labelled band of at most ``max_maps`` maps, ``max_cols`` per row.
    """
    picture = np.asarray(to_numpy(image), dtype=np.float64)
    while picture.ndim > 3 and picture.shape[0] == 1:
        picture = picture[0]
    if picture.ndim == 3:
        picture = picture[0] if picture.shape[0] == 1 else np.moveaxis(_stretch(picture), 0, -1)
    if picture.ndim not in (2, 3):
        raise ShapeError(f"feature_maps_figure: expected an image (H, W) or (C, H, W), received {picture.shape}")
    blocks = []
    for name, array in maps:
        array = np.asarray(to_numpy(array), dtype=np.float64)
        if array.ndim == 4:
            array = array[0]
        if array.ndim != 3:
            raise ShapeError(f"feature_maps_figure: maps of {name!r} should be (C, H, W), received {array.shape}")
        blocks.append((name, array))
    if not blocks:
        raise ConfigError("feature_maps_figure: no feature maps to show (does the model have a Conv2D layer?)")

    grids = [_grid(min(len(a), max_maps), max_cols) for _, a in blocks]
    cols = max(c for _, c in grids)
    heights = [1.6] + [rows + 0.45 for rows, _ in grids]
    fig = _figure(max(4.0, 0.75 * cols + 0.4), 0.75 * sum(heights) + 0.4)
    bands = fig.subfigures(len(heights), 1, height_ratios=heights)
    ax = bands[0].subplots()
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("input", fontsize=9)
    for band, (name, array), (rows, _) in zip(bands[1:], blocks, grids):
        axes = np.atleast_1d(band.subplots(rows, cols, squeeze=False)).ravel()
        for a in axes:
            a.set_axis_off()
        for a, fmap in zip(axes, array[:max_maps]):
            a.imshow(_stretch(fmap), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        more = f", first {max_maps} shown" if len(array) > max_maps else ""
        band.suptitle(f"{name}: {len(array)} maps {array.shape[1]}x{array.shape[2]}{more}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def model_input(picture: np.ndarray, model) -> np.ndarray:
    """A ``(28, 28)`` picture in [0, 1] -> the batch ``(1, *model.input_shape)`` with the model's stored
    preprocessing applied (mean/std; nothing for MNIST models, which take pixels / 255)."""
    from .data.normalize import normalize

    pre = (getattr(model, "info", None) or {}).get("preprocessing")
    x = np.asarray(picture)
    x = normalize(x.reshape(1, 1, *x.shape) if x.ndim == 2 else x[None], pre)
    if math.prod(x.shape) != math.prod(model.input_shape):
        raise ShapeError(f"the picture gives {x.shape} pixels, the model expects inputs of shape {model.input_shape}")
    return x.reshape(1, *model.input_shape)


def explanation_figure(picture, rows, title: str | None = None):
    """Why the network answered: for each class in ``rows``, saliency, SmoothGrad and Grad-CAM.

    ``picture``: the ``(H, W)`` input as the model saw it. ``rows``: ``[(label, saliency (H, W),
    smoothgrad (H, W), grad_cam (H, W) in [0, 1])]``, e.g. one row for the predicted class and one for a
    chosen one. Saliency maps are drawn as heat (bright = the score is sensitive to that pixel), Grad-CAM
    as a translucent overlay on the picture (where the evidence for the class lies).
    """
    picture = np.asarray(to_numpy(picture), dtype=np.float64)
    if picture.ndim != 2:
        raise ShapeError(f"explanation_figure: expected a picture (H, W), received {picture.shape}")
    if not rows:
        raise ConfigError("explanation_figure: nothing to show (no class given)")
    fig = _figure(8.0, 2.1 * len(rows) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(rows), 4, squeeze=False))
    for (label, grad, smooth, cam), line in zip(rows, axes):
        line[0].imshow(picture, cmap="gray", interpolation="nearest")
        line[0].set_title(f"input, class {label}", fontsize=9)
        line[1].imshow(_stretch(np.asarray(grad, dtype=np.float64)), cmap="inferno", vmin=0, vmax=1,
                       interpolation="nearest")
        line[1].set_title("saliency |∂z/∂x|", fontsize=9)
        line[2].imshow(_stretch(np.asarray(smooth, dtype=np.float64)), cmap="inferno", vmin=0, vmax=1,
                       interpolation="nearest")
        line[2].set_title("SmoothGrad", fontsize=9)
        line[3].imshow(picture, cmap="gray", interpolation="nearest")
        line[3].imshow(np.asarray(cam, dtype=np.float64), cmap="jet", alpha=0.45, vmin=0, vmax=1,
                       interpolation="bilinear")
        line[3].set_title("Grad-CAM", fontsize=9)
        for a in line:
            a.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig
