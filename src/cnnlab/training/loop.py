"""The training loop: mini-batch gradient descent, epoch after epoch, watched by callbacks.

One epoch::

    for x, y in batches.epoch(e):                   # cnnlab.data.Batches: a shuffle drawn from (seed, e);
                                                    # uint8 -> float32 (and augmentation), one batch at a time
        loss, logits = model.train_step(x, y, loss_fn, optimizer)   # forward, backward, update
        running cost / accuracy += ...              # from the logits train_step returns: no extra pass
    validation cost and accuracy                    # one inference pass over the validation set

The four classic monitors (Nielsen, ch. 3) are training cost, training accuracy, validation cost and
validation accuracy; each can be switched off. The training ones are running averages over the epoch (the
weights change while they are measured — free, and what Keras reports); ``full_train_eval=True`` measures
them instead on the whole training set after the epoch, at the price of one more pass.

Everything else — the progress bar, the per-epoch line, early stopping, the run folder — is a
:class:`~cnnlab.training.callbacks.Callback` (module :mod:`cnnlab.training.callbacks`), so ``fit`` stays a loop you can
read in one screen.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ..engine.backend import to_numpy
from .callbacks import (MONITORS, Callback, DivergenceGuard, EarlyStopping, EpochLog, History, ProgressBar,
                        TrainingState)
from ..data.batches import Batches
from ..data.normalize import normalize
from ..data_parallel import release, training_step
from ..engine.device import model_device, to_device, to_device_array
from ..engine.errors import ConfigError, NumericalError, ShapeError
from ..evaluation import evaluate_model, predicted_classes


def _arrays(data, name: str):
    """(images or inputs, int labels) from a Dataset or an ``(x, y)`` pair."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images, np.asarray(data.labels)
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a Dataset or an (x, y) pair, received {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ShapeError(f"{name}: {len(x)} samples but {len(y)} labels")
    return x, y


def _chance(labels) -> float:
    """The accuracy of always answering the most frequent class (the divergence guard's 'chance')."""
    labels = np.asarray(labels)
    if labels.ndim == 2:  # one-hot targets
        labels = labels.argmax(axis=1)
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / len(labels))


def _has_batchnorm(model) -> bool:
    from ..engine.layers import BatchNorm

    return any(isinstance(layer, BatchNorm) for layer in getattr(model, "layers", ()))


def fit(model, train_data, val_data=None, *, epochs: int = 10, batch_size: int = 100, loss="crossentropy",
        optimizer="adam", lr: float | None = None, schedule=None, augment=None, preprocessing=None,
        monitors=None, full_train_eval: bool = False, seed: int = 0, callbacks=(),
        progress: bool = True, verbose: bool = True, early_stop: int | None = None,
        initial_epoch: int = 0, history: History | None = None, device: str | None = None,
        threads: int | None = None, divergence: DivergenceGuard | bool = True, step_with=None) -> History:
    """Train ``model`` by mini-batch gradient descent; returns the :class:`History`.

    Args:
        train_data, val_data: a :class:`~cnnlab.data.Dataset` (uint8 images) or an ``(x, y)`` pair.
        loss: a name (``"crossentropy"``, ``"quadratic"``, ...) or a Loss.
        optimizer: a name (``"sgd"``, ``"momentum"``, ``"adam"``) with ``lr``, or an Optimizer.
        schedule: a callable ``epoch (0-based) -> lr``, applied at the start of every epoch.
        augment: a callable ``(x in [0, 1], rng) -> x`` (e.g. :class:`cnnlab.data.augment.Augmentation`).
        preprocessing: ``{"scale", "mean", "std"}`` for uint8 images (default ÷255).
        monitors: dict switching ``train_cost``, ``train_accuracy``, ``val_cost``, ``val_accuracy``.
        seed: the batch order and augmentation of epoch ``e`` are drawn from ``(seed, e)``
            (:class:`cnnlab.data.Batches`), so a resumed run sees the batches an unbroken one would.
        initial_epoch, history: continue a run (``cnnlab.training.runs`` restores them from a checkpoint).
        device: ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); default: where the model is. The model and the
            optimizer's state move there and stay there after training (as ``module.to(device)`` in
            PyTorch); every batch is prepared on the CPU (uint8 -> float32, augmentation) and then copied
            over, with its labels.
        threads: CPU threads for the training steps: ``None`` (default) for ``$CNNLAB_THREADS`` or every
            core, ``1`` for the plain serial step. With several, each batch is split into shards trained at
            once (:class:`cnnlab.data_parallel.DataParallel`) when the model is big enough to gain; the
            result is the same up to rounding.

    A model with a :class:`~cnnlab.engine.layers.BatchNorm` layer never trains on a last batch of one image
    (its statistics would be undefined): that image joins the batch before it
    (:func:`cnnlab.data.batches.batch_bounds`).

        divergence: a :class:`~cnnlab.training.callbacks.DivergenceGuard` (``True``: the default one,
            ``False``: none) that stops a run whose cost explodes or stays at chance.
        step_with: a callable ``model -> stepper`` (an object with ``train_step(x, y, loss, optimizer)``
            that leaves the trained weights in ``model``) used instead of cnnlab's own step, e.g.
            :class:`cnnlab.interop.torch_step.TorchStep` to train the same run with PyTorch (CPU only).

    Raises :class:`~cnnlab.engine.errors.NumericalError` when the loss becomes NaN or infinite (the message
    says at which epoch and batch), or when the guard finds an epoch diverged (that epoch is then not
    added to the history, and the callbacks never see it: the last checkpoint stays the last good one). Ctrl-C stops after the callbacks have saved what they keep; the
    history then says ``stop_reason == "interrupted"``.
    """
    from ..engine.losses import get_loss
    from ..engine.optim import Optimizer, get_optimizer

    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 1), ("initial_epoch", initial_epoch, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"fit: {name} must be an integer >= {low}, received {value!r}")
    monitors = {m: True for m in MONITORS} | dict(monitors or {})
    loss = get_loss(loss)
    if not isinstance(optimizer, Optimizer):
        optimizer = get_optimizer(optimizer, **({"lr": lr} if lr is not None else {}))
    images, labels = _arrays(train_data, "training data")
    if len(images) == 0:
        raise ConfigError("training data is empty")
    val = _arrays(val_data, "validation data") if val_data is not None else None
    device = device or model_device(model)
    if step_with is not None and device != "cpu":
        raise ConfigError(f"fit: step_with trains on the CPU only, received device={device!r}")
    to_device(model, device, optimizer)  # a ConfigError naming what is missing, before any training
    batches = Batches((images, labels), batch_size, seed=seed, preprocessing=preprocessing,
                      input_shape=model.input_shape, augment=augment, fold_single=_has_batchnorm(model))
    plain = functools.partial(normalize, preprocessing=preprocessing, input_shape=model.input_shape)
    from_logits = model.fused_stop(loss) is not None
    stepper = step_with(model) if step_with is not None else training_step(model, threads) if device == "cpu" else model

    callbacks = list(callbacks)
    if progress:
        callbacks.insert(0, ProgressBar())
    if verbose:
        callbacks.append(EpochLog())
    if early_stop:
        if val is None or not monitors["val_accuracy"]:
            raise ConfigError(f"early_stop={early_stop} watches the validation accuracy, but "
                              + ("there is no validation set" if val is None else "the val_accuracy monitor is off"))
        callbacks.append(EarlyStopping(early_stop))

    # Only callbacks that do something per batch are called per batch (the loop is hot for small nets).
    batch_callbacks = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
    count_correct = monitors["train_accuracy"] and not full_train_eval
    state = TrainingState(model, optimizer, loss, seed, history or History(), epochs, initial_epoch)
    guard = DivergenceGuard() if divergence is True else (divergence or None)
    if guard is not None:
        guard.steps_per_epoch = len(batches)  # the stall rule waits for enough updates, not just epochs
    chance = _chance(labels)
    measure_start = state.history.start_cost is None and initial_epoch == 0
    n, n_batches = len(images), len(batches)
    for cb in callbacks:
        cb.on_train_begin(state)
    try:
        for epoch in range(initial_epoch, epochs):
            state.epoch = epoch + 1
            if schedule is not None:
                optimizer.lr = float(schedule(epoch))
            start_time = time.perf_counter()
            for cb in callbacks:
                cb.on_epoch_begin(state, epoch + 1, n_batches)
            total_loss, correct = 0.0, 0
            for b, (xb, yb) in enumerate(batches.epoch(epoch)):
                try:
                    value, out = stepper.train_step(to_device_array(xb, device), to_device_array(yb, device),
                                                    loss, optimizer)
                except NumericalError as exc:
                    raise NumericalError(f"epoch {epoch + 1}, batch {b + 1}/{n_batches}: {exc}") from None
                if measure_start:  # the first batch's loss is the untrained model's (before any update)
                    state.history.start_cost, measure_start = float(value), False
                total_loss += value * len(yb)
                if count_correct:
                    correct += (predicted_classes(to_numpy(out), from_logits) == yb).sum()
                for cb in batch_callbacks:
                    cb.on_batch_end(state, b, value)
            row = {"epoch": epoch + 1, "train_cost": None, "train_accuracy": None,
                   "val_cost": None, "val_accuracy": None, "lr": optimizer.lr}
            if full_train_eval and (monitors["train_cost"] or monitors["train_accuracy"]):
                result = evaluate_model(model, images, labels, loss=loss, transform=plain, device=device)
                row["train_cost"], row["train_accuracy"] = result.loss, result.accuracy
            else:
                row["train_cost"], row["train_accuracy"] = total_loss / n, int(correct) / n
            if val is not None and (monitors["val_cost"] or monitors["val_accuracy"]):
                result = evaluate_model(model, val[0], val[1], loss=loss, transform=plain, device=device)
                row["val_cost"], row["val_accuracy"] = result.loss, result.accuracy
            for m in MONITORS:
                if not monitors[m]:
                    row[m] = None
            row["seconds"] = time.perf_counter() - start_time
            problem = guard.check(state.history, row, chance) if guard is not None else None
            if problem:
                raise NumericalError(f"epoch {epoch + 1}: {problem}")
            state.history.rows.append(row)
            stop = False
            for cb in callbacks:
                stop = bool(cb.on_epoch_end(state, row)) or stop
            if stop:
                state.history.stop_reason = "early_stop"
                break
        else:
            state.history.stop_reason = "completed"
    except KeyboardInterrupt:
        state.history.stop_reason = "interrupted"
    except NumericalError as exc:
        state.history.stop_reason = "diverged"
        state.error = str(exc)
        for cb in callbacks:
            cb.on_train_end(state)
        exc.history = state.history
        raise
    finally:
        release(stepper)  # worker processes, if the step had any
    for cb in callbacks:
        cb.on_train_end(state)
    return state.history


def evaluate(model, dataset, batch_size: int = 256, loss=None, preprocessing=None, device: str | None = None):
    """Accuracy, per-class accuracy, confusion matrix and mistakes of ``model`` on a dataset.

    ``dataset`` is a :class:`~cnnlab.data.Dataset` or an ``(x, y)`` pair; uint8 images are converted
    batch by batch with ``preprocessing`` (default: the one stored in the model file, else ÷255) and
    computed on ``device`` (default: where the model is). Returns an :class:`~cnnlab.evaluation.Evaluation`.
    """
    from ..engine.losses import get_loss

    images, labels = _arrays(dataset, "evaluation data")
    if preprocessing is None:
        preprocessing = getattr(model, "info", {}).get("preprocessing")
    class_names = getattr(dataset, "class_names", None) or getattr(model, "info", {}).get("class_names", ())
    transform = functools.partial(normalize, preprocessing=preprocessing, input_shape=model.input_shape)
    return evaluate_model(model, images, labels, class_names, batch_size,
                          loss=get_loss(loss) if loss is not None else None, transform=transform, device=device)
