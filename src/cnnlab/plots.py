"""Figures of training and evaluation: learning curves, confusion matrix, gallery of mistakes.

The builders take plain data (a :class:`~cnnlab.training.loop.History` or its rows, a confusion matrix, images)
and return a ``matplotlib.figure.Figure``; they never write files. :func:`save_figure` writes one
atomically. Figures are created with ``Figure()`` and the Agg canvas rather than ``pyplot``: no global
state, no GUI backend, safe in a server or a thread — and a notebook still shows a returned figure
inline. matplotlib is imported inside the functions so ``import cnnlab`` stays light.
"""

from __future__ import annotations

import os

import numpy as np


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _rows(history) -> list[dict]:
    """Epoch rows from a History (``.rows``) or a list of dicts (``metrics.json``)."""
    return list(getattr(history, "rows", history))


def _series(rows, key):
    """(epochs, values) for the rows where ``key`` has a value."""
    pairs = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def curves_figure(history, title: str | None = None):
    """Three panels: cost (training vs validation), accuracy (training vs validation), and the overlay.

    The overlay draws training cost (left axis) and validation accuracy (right axis) together, the
    picture of overfitting in Nielsen's chapter 3: the cost keeps falling while the accuracy on unseen
    data stops improving. Monitors that were switched off are simply absent.
    """
    rows = _rows(history)
    # Fixed margins instead of a layout engine: this figure is redrawn during training and
    # constrained layout would triple its cost.
    fig = _figure(13, 3.8, layout=None)
    fig.subplots_adjust(left=0.05, right=0.95, bottom=0.13, top=0.84, wspace=0.3)
    ax_cost, ax_acc, ax_both = fig.subplots(1, 3)
    styles = {"train": dict(color="tab:blue", marker="o", ms=3), "val": dict(color="tab:orange", marker="s", ms=3)}
    for split, label in (("train", "training"), ("val", "validation")):
        e, v = _series(rows, f"{split}_cost")
        if e:
            ax_cost.plot(e, v, label=label, **styles[split])
        e, v = _series(rows, f"{split}_accuracy")
        if e:
            ax_acc.plot(e, [100 * a for a in v], label=label, **styles[split])
    ax_cost.set(title="cost", xlabel="epoch", ylabel="cost")
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_cost, ax_acc):
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)

    e, v = _series(rows, "train_cost")
    ax_both.plot(e, v, color="tab:blue", label="training cost")
    ax_both.set(title="overlay", xlabel="epoch", ylabel="training cost")
    ax_both.grid(alpha=0.3)
    twin = ax_both.twinx()
    e, v = _series(rows, "val_accuracy")
    twin.plot(e, [100 * a for a in v], color="tab:orange", label="validation accuracy")
    twin.set_ylabel("validation accuracy (%)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_cost, ax_acc, ax_both):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = ax_both.get_lines() + twin.get_lines()
    if handles:
        ax_both.legend(handles, [h.get_label() for h in handles], loc="best")
    if title:
        fig.suptitle(title)
    return fig


def confusion_figure(confusion, class_names=None, title: str = "confusion matrix"):
    """Heat map of a ``(K, K)`` confusion matrix (rows true, columns predicted) with the counts written in."""
    confusion = np.asarray(confusion)
    k = confusion.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    size = max(4.5, 0.55 * k + 2)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    # Colour by the fraction of each true class, so rare classes are as readable as common ones.
    totals = confusion.sum(axis=1, keepdims=True)
    fraction = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    long_names = max(map(len, names)) > 2
    ax.set_xticks(range(k), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if confusion[t, p]:
                    ax.text(p, t, str(int(confusion[t, p])), ha="center", va="center", fontsize=8,
                            color="white" if fraction[t, p] > 0.5 else "black")
    return fig


def misclassified_figure(images, labels, predictions, class_names=None, indices=None, max_images: int = 36,
                         title: str | None = None):
    """A grid of wrongly classified images, each titled ``pred 3 / true 5`` (class names when given).

    ``images`` is ``(N, C, H, W)`` (uint8 or float in [0, 1]); ``indices`` selects which to show (default:
    every sample whose prediction differs from its label), at most ``max_images`` of them.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if indices is None:
        indices = np.flatnonzero(labels != predictions)
    indices = np.asarray(indices)[:max_images]
    names = [str(c) for c in class_names] if class_names is not None else None
    cols = int(min(max(len(indices), 1), 9))
    rows = int(max(1, -(-len(indices) // cols)))  # ceil
    fig = _figure(1.3 * cols + 0.3, 1.45 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, indices):
        img = images[i]
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        p, t = int(predictions[i]), int(labels[i])
        text = f"pred {names[p]} / true {names[t]}" if names else f"pred {p} / true {t}"
        ax.set_title(text, fontsize=6 if len(text) > 18 else 9, color="tab:red")
    fig.suptitle(title or (f"{len(indices)} misclassified images" if len(indices) else "no misclassified images"))
    return fig


def figure_format(path: str | os.PathLike) -> str:
    """The file format ``path``'s extension names (``"png"`` when it has none); an extension matplotlib
    cannot write (``.txt``) raises :class:`~cnnlab.engine.errors.ConfigError`. Commands call it before any work."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .engine.errors import ConfigError

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    supported = FigureCanvasAgg.get_supported_filetypes()
    if fmt not in supported:
        raise ConfigError(f"{path}: cannot draw a figure as .{fmt}; expected one of: "
                          f"{', '.join('.' + f for f in sorted(supported))}")
    return fmt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (format from the extension, see :func:`figure_format`) atomically, then
    release its memory."""
    from pathlib import Path

    from .atomic import atomic_path

    path = Path(path)
    fmt = figure_format(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    fig.clear()
