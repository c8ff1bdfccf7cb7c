"""How good is a model, and where does it fail: accuracy, per-class accuracy, confusion, mistakes.

Everything here starts from two integer arrays, the true labels and the predicted ones, both ``(N,)``.
The confusion matrix ``C`` is ``(K, K)`` with ``C[t, p]`` = how many samples of true class ``t`` were
predicted as ``p``: the diagonal holds the correct answers, so

* accuracy            = trace(C) / N
* per-class accuracy  = C[k, k] / Σ_p C[k, p]   (the recall of class k; NaN -> None for an absent class)

It is computed without a Python loop with one ``bincount`` of ``t · K + p``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .engine.backend import to_numpy
from .engine.errors import ConfigError, ShapeError
from .threads import default_threads, map_in_threads


def confusion_matrix(true, pred, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class."""
    true = np.asarray(true, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if true.shape != pred.shape or true.ndim != 1:
        raise ShapeError(f"confusion_matrix: expected two label arrays of the same shape (N,), "
                         f"received {true.shape} and {pred.shape}")
    for what, a in (("true", true), ("predicted", pred)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ShapeError(f"confusion_matrix: {what} labels must be in [0, {num_classes - 1}], "
                             f"received values from {a.min()} to {a.max()}")
    return np.bincount(true * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Fraction of each true class predicted correctly (``None`` for a class with no sample)."""
    totals = confusion.sum(axis=1)
    correct = np.diag(confusion)
    return [float(c / t) if t else None for c, t in zip(correct, totals)]


@dataclass
class Evaluation:
    """The result of :func:`evaluate_predictions`; ``to_json()`` gives the ``cnnlab evaluate --json`` object.

    Attributes:
        accuracy: fraction correct, in [0, 1].
        n: number of samples.
        per_class: accuracy of each true class (``None`` if absent), length K.
        confusion: ``(K, K)`` int64 counts, rows true, columns predicted.
        misclassified: indices (into the evaluated set) of the wrong predictions, ascending.
        predictions: predicted class of every sample ``(N,)``.
        labels: true class of every sample ``(N,)``.
        class_names: the K class names.
        loss: mean loss on the set, when it was computed.
    """

    accuracy: float
    n: int
    per_class: list
    confusion: np.ndarray
    misclassified: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    class_names: tuple = field(default_factory=tuple)
    loss: float | None = None

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "per_class": self.per_class,
                "confusion": self.confusion.tolist()}

    def report(self) -> str:
        """Human-readable text: accuracy, per-class accuracy, the confusion matrix."""
        names = [str(c) for c in self.class_names] or [str(k) for k in range(len(self.per_class))]
        wrong = self.n - int(np.trace(self.confusion))
        lines = [f"accuracy: {self.accuracy:.2%} ({self.n - wrong:,} of {self.n:,} correct, {wrong:,} wrong)"]
        if self.loss is not None:
            lines.append(f"loss: {self.loss:.4f}")
        lines.append("")
        lines.append("per-class accuracy:")
        width = max(map(len, names))
        for name, acc, total in zip(names, self.per_class, self.confusion.sum(axis=1)):
            shown = "   n/a" if acc is None else f"{acc:7.2%}"
            lines.append(f"  {name:<{width}}  {shown}  ({total:,} samples)")
        lines.append("")
        lines.append("confusion matrix (rows: true class, columns: predicted class):")
        lines.append(format_confusion(self.confusion, names))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The report as HTML for Jupyter: accuracy, per-class accuracy, a shaded confusion matrix."""
        return evaluation_html(self)


def format_confusion(confusion: np.ndarray, names) -> str:
    """The confusion matrix as an aligned text table with class names on both axes."""
    labels = [str(n)[:10] for n in names]
    cell = max(max(len(str(int(confusion.max(initial=0)))), 1), *(len(s) for s in labels)) + 1
    head_w = max(map(len, labels)) + 1
    rows = [" " * head_w + "".join(f"{s:>{cell}}" for s in labels)]
    for name, row in zip(labels, confusion):
        rows.append(f"{name:<{head_w}}" + "".join(f"{int(v):>{cell}}" for v in row))
    return "\n".join(rows)


_CELL = "padding:2px 6px;border:1px solid #ddd;text-align:right"


def evaluation_html(result: Evaluation) -> str:
    """HTML of an :class:`Evaluation`: a headline, then per-class accuracy and the confusion matrix.

    A cell's shade grows with its share of the true class's samples: green on the diagonal (correct),
    red off it (the confusions), so the frequent mistakes stand out. Class names are escaped.
    """
    from html import escape

    names = [escape(str(c)) for c in result.class_names] or [str(k) for k in range(len(result.per_class))]
    wrong = result.n - int(np.trace(result.confusion))
    headline = f"accuracy {result.accuracy:.2%} ({result.n - wrong:,} of {result.n:,} correct, {wrong:,} wrong)"
    if result.loss is not None:
        headline += f", loss {result.loss:.4f}"
    totals = result.confusion.sum(axis=1)
    header = "".join(f'<th style="{_CELL}">{n}</th>' for n in names)
    rows = []
    for t, (name, acc, row) in enumerate(zip(names, result.per_class, result.confusion)):
        shown = "n/a" if acc is None else f"{acc:.2%}"
        cells = []
        for p, count in enumerate(row):
            share = count / totals[t] if totals[t] else 0.0
            rgb = "40,160,60" if p == t else "220,50,40"
            cells.append(f'<td style="{_CELL};background:rgba({rgb},{0.6 * share:.3f})">{int(count)}</td>')
        rows.append(f'<tr><th style="{_CELL}">{name}</th><td style="{_CELL}">{shown}</td>'
                    f'<td style="{_CELL}">{int(totals[t]):,}</td>{"".join(cells)}</tr>')
    return (f'<div class="cnnlab-evaluation"><p><b>{headline}</b></p>'
            '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">'
            '<caption style="text-align:left">rows: true class; columns: predicted class</caption>'
            f'<thead><tr><th style="{_CELL}">class</th><th style="{_CELL}">accuracy</th>'
            f'<th style="{_CELL}">samples</th>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def evaluate_predictions(labels, predictions, num_classes: int, class_names=(), loss=None) -> Evaluation:
    """Build an :class:`Evaluation` from true and predicted labels ``(N,)``."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    confusion = confusion_matrix(labels, predictions, num_classes)
    n = int(labels.size)
    return Evaluation(
        accuracy=float(np.trace(confusion) / n) if n else float("nan"),
        n=n,
        per_class=per_class_accuracy(confusion),
        confusion=confusion,
        misclassified=np.flatnonzero(labels != predictions),
        predictions=predictions,
        labels=labels,
        class_names=tuple(class_names),
        loss=loss,
    )


def evaluate_model(model, x, labels, class_names=(), batch_size: int = 256, loss=None,
                   transform=None, device: str | None = None) -> Evaluation:
    """Run ``model`` on inputs ``x`` and compare with ``labels`` ``(N,)``; inference mode, in batches.

    ``x`` is ``(N, *input_shape)`` float, or anything ``transform`` turns batch by batch into that (uint8
    images and a preprocessing function: the whole set is never converted to float at once).
    ``loss`` (a :class:`~cnnlab.engine.losses.Loss`) adds the mean loss to the result. Batches are copied to
    ``device`` (default: where the model's parameters are) after ``transform``.
    """
    from .engine.device import model_device, to_device_array

    where = model_device(model)
    if device is not None and device != where:
        raise ConfigError(f"evaluate: the model is on the {where}, but device {device!r} was asked for; "
                          f"move it first with cnnlab.engine.device.to_device(model, {device!r})")
    device = where
    labels = np.asarray(labels)
    if len(x) != len(labels):
        raise ShapeError(f"evaluate: {len(x)} inputs but {len(labels)} labels")
    num_classes = int(model.output_shape[-1])
    if num_classes == 1:  # a single sigmoid unit: class 1 when the output is above 0.5
        num_classes = 2
    from_logits = loss is not None and model.fused_stop(loss) is not None

    def run(start: int):
        """(summed loss, predicted classes) of one batch; batches may run on several threads."""
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        if transform is not None:
            xb = transform(xb)
        xb = to_device_array(xb, device)
        if loss is None:
            return 0.0, predicted_classes(to_numpy(model.forward(xb)))
        value, out = model.loss_and_output(xb, to_device_array(yb, device), loss)
        return value * len(xb), predicted_classes(to_numpy(out), from_logits)

    starts = list(range(0, len(x), batch_size))
    # Batches on threads on the CPU only: a GPU runs one batch at a time (and each would hold its memory).
    results = map_in_threads(run, starts, default_threads()) if device == "cpu" else [run(s) for s in starts]
    total_loss = sum(value for value, _ in results)
    preds = [p for _, p in results]
    predictions = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    mean_loss = total_loss / len(x) if loss is not None and len(x) else None
    own_names = list((getattr(model, "info", None) or {}).get("class_names") or [])
    if class_names is not None and len(class_names) < num_classes and len(own_names) == num_classes:
        # a model with more answers than the data has classes (a digit model's "not a digit"): its own names
        class_names = own_names
    return evaluate_predictions(labels, predictions, num_classes, class_names, mean_loss)


def predicted_classes(out, from_logits: bool = False):
    """Class index per row of network outputs ``(N, K)``.

    The argmax is the same for logits and probabilities. A single output unit (binary classification)
    means class 1 above probability 0.5, i.e. above logit 0.
    """
    if out.shape[1] == 1:
        return (out[:, 0] > (0.0 if from_logits else 0.5)).astype(np.int64)
    return out.argmax(axis=1)
