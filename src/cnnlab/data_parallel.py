"""Data parallelism around a model: every CPU core trains on its own shard of the batch.

Opt-in and outside the engine, as PyTorch's ``DataParallel``: the model and its layers are serial and know
nothing of this module. :func:`fit <cnnlab.training.loop.fit>` wraps the model in :class:`DataParallel` when it has
several cores and the model is big enough to gain.

Why: NumPy runs element-wise operations and copies on one core; only the matrix products (BLAS) use
several. On a small CPU most of a convolution's time is copies (im2col/col2im) and element-wise work, so a
plain training step leaves the other cores idle most of the time. Mini-batch gradient descent gives an easy
way out: the gradient of the batch loss is a sum over samples, so it can be computed on shards of the
batch independently and added up::

    L = (1/N) Σ_n ℓ_n = Σ_s (N_s / N) · L_s          L_s = (1/N_s) Σ_{n in shard s} ℓ_n
    ∂L/∂θ = Σ_s (N_s / N) · ∂L_s/∂θ

So one step becomes: split the batch into ``threads`` shards; in one thread per shard, compute the shard's
gradients with a *replica* of the model (``replica.compute_gradients(x_s, y_s, loss, grad_scale=N_s/N)``);
add the replicas' gradients; take one optimizer step, as the serial step would. The result equals the
serial step up to floating-point rounding (sums are added in another order). A replica shares the parameter
arrays with the model (nothing is copied, and the optimizer's in-place update is seen by all) but has its
own caches, gradients and work arrays.

Two layers need more than a copy, and get a replica class of their own here (the layers stay textbook):

- Dropout draws random masks. To draw exactly what the serial step would, the model's own Dropout layers
  draw their whole-batch masks first, in layer order; each :class:`ShardDropout` uses its shard's rows.
- BatchNorm's output for a sample depends on the rest of the batch (the batch statistics). Its replicas
  are :class:`SyncBatchNorm` (PyTorch's name for the same idea): every per-channel sum over the batch is
  added up across the shards at a :class:`ShardSum` (a barrier), twice in the forward pass (mean,
  variance) and once in the backward pass, so every shard normalizes with the whole batch's statistics.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading

import numpy as np

from .engine.backend import array_module
from .engine.errors import ConfigError
from .engine.layers import BatchNorm, Dropout
from .process_parallel import (MIN_SHARD, ProcessDataParallel, ShardDropout, ShardedStep, can_use_processes,
                               replicate)
from .threads import blas_limit_available, default_threads, in_pool_worker, map_in_threads

#: Layers a batch can be split for: those that treat every sample on its own, Dropout (its masks are
#: drawn for the whole batch first) and BatchNorm (its statistics are summed across the shards).
SHARDABLE_KINDS = frozenset({"Conv2D", "MaxPool2D", "AvgPool2D", "Dense", "Flatten", "ReLU", "LeakyReLU",
                             "ELU", "Sigmoid", "Tanh", "Softmax", "Dropout", "BatchNorm"})

#: Seconds a shard waits at a :class:`ShardSum` for the others before giving up (they are computing the
#: same layers on as many samples, so anything close to this means a thread is gone, not slow).
SHARD_SUM_TIMEOUT = 300.0

#: Below this many floating-point operations per training sample, thread hand-offs cost more than they
#: save (an MLP step takes well under a millisecond): such models train serially.
MIN_FLOPS_PER_SAMPLE = 500_000

#: Environment variable: ``threads`` keeps the shards in threads even where worker processes would do.
SHARDS_VARIABLE = "CNNLAB_SHARDS"


def can_shard(model) -> bool:
    """True when every layer handles samples independently and the model is big enough to gain."""
    if any(layer.kind not in SHARDABLE_KINDS for layer in model.layers):
        return False
    flops = sum(layer.forward_flops(1) + layer.backward_flops(1) for layer in model.layers)
    return flops >= MIN_FLOPS_PER_SAMPLE


def training_step(model, threads: int | None = None):
    """What trains ``model``: a data-parallel wrapper when it pays, else the model itself.

    ``threads``: ``None`` for :func:`cnnlab.threads.default_threads`, ``1`` for the plain serial step.
    The wrapper is :class:`cnnlab.process_parallel.ProcessDataParallel` (shards in worker processes) where
    the platform and the model allow it and ``$CNNLAB_SHARDS`` is not ``threads``, else :class:`DataParallel`
    (shards in threads). All have ``train_step(x, y, loss, optimizer) -> (loss, output)``; call
    :func:`release` when done with one.
    """
    threads = check_threads(threads)
    if threads >= 2 and can_shard(model) and blas_limit_available():
        if os.environ.get(SHARDS_VARIABLE, "").strip() != "threads" and can_use_processes(model):
            return ProcessDataParallel(model, threads)
        return DataParallel(model, threads)
    return model


def release(stepper) -> None:
    """Stop the worker processes of what :func:`training_step` returned, if it has any."""
    close = getattr(stepper, "close", None)
    if callable(close):
        close()


def check_threads(threads) -> int:
    """``threads`` as a positive int (``None``: the default), or a ConfigError naming what was received."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer or None, received {threads!r}")
    return threads


class ShardSum:
    """Where the shards of one batch add up their per-channel sums (one per BatchNorm layer of a step).

    Every shard's thread calls ``shard_sum(index, part)`` with its partial sum ``(C,)`` and gets back the
    sum of all the parts once every shard has handed its in: the last thread to arrive adds them up (the
    barrier's action), in shard order, and every thread receives that one array (to read, not to write).
    The next sum cannot start before every thread has left this one, because its action waits for all
    of them to arrive again. A shard that fails calls :meth:`abort`, so the others stop waiting
    (``threading.BrokenBarrierError``) instead of hanging; :meth:`reset` readies it for the next step.
    """

    def __init__(self, shards: int):
        self.parts = [None] * shards
        self.total = None
        self.samples = 0  # samples in the whole batch of the current step (set by DataParallel)
        self._barrier = threading.Barrier(shards, action=self._add_up, timeout=SHARD_SUM_TIMEOUT)

    def _add_up(self) -> None:
        total = self.parts[0].copy()
        for other in self.parts[1:]:
            total += other
        self.total = total

    def __call__(self, index: int, part):
        self.parts[index] = part
        self._barrier.wait()
        return self.total

    def abort(self) -> None:
        self._barrier.abort()

    def reset(self) -> None:
        self._barrier.reset()


class SyncBatchNorm(BatchNorm):
    """A BatchNorm replica for one shard: its sums over the batch are the sums over *all* shards.

    Built from a trained model's layer by :meth:`replica_of`; shares that layer's parameters and running
    averages, which only shard 0 updates (once per step, as the serial layer does).
    """

    @classmethod
    def replica_of(cls, layer: BatchNorm, shard_sum: ShardSum, shard_index: int) -> "SyncBatchNorm":
        twin = replicate(layer)
        twin.__class__ = cls  # the same state; the three methods below differ
        twin.shard_sum, twin.shard_index = shard_sum, shard_index
        return twin

    def batch_count(self, x) -> int:
        return self.shard_sum.samples

    def batch_sum(self, partial):
        return self.shard_sum(self.shard_index, partial)

    def update_running(self, batch_mean, unbiased_var) -> None:
        if self.shard_index == 0:
            super().update_running(batch_mean, unbiased_var)


#: Held by a step whose shards wait for each other (BatchNorm): such a step needs all its shards running
#: at once, so two of them must not share the worker pool at the same time.
_COUPLED_STEP_LOCK = threading.Lock()


class DataParallel(ShardedStep):
    """Trains ``model`` on ``threads`` shards of each batch at once; the same steps as the serial model.

    ``DataParallel(model, threads).train_step(x, y, loss, optimizer)`` returns what
    ``model.train_step`` would, and leaves the summed gradients in the model's layers (``layer.grads``).
    A batch too small to split (or a CuPy batch) takes the model's own serial step.
    """

    def __init__(self, model, threads: int | None = None):
        self.model = model
        self.threads = check_threads(threads)
        self.shard_sums = [ShardSum(self.threads) if isinstance(layer, BatchNorm) else None
                           for layer in model.layers]
        self.replicas = [self._replica(shard) for shard in range(self.threads)]
        self._error = None  # the first error of a shard in this step (the others then see a broken ShardSum)

    def _replica(self, shard: int):
        """A shallow copy of the model whose layers are replicas (see the module doc)."""
        layers = []
        for layer, shard_sum in zip(self.model.layers, self.shard_sums):
            if shard_sum is not None:
                layers.append(SyncBatchNorm.replica_of(layer, shard_sum, shard))
            elif isinstance(layer, Dropout):
                layers.append(ShardDropout.replica_of(layer))
            else:
                layers.append(replicate(layer))
        twin = copy.copy(self.model)
        twin.layers = layers
        return twin

    @property
    def couples_shards(self) -> bool:
        """True when the shards wait for each other (the model has BatchNorm)."""
        return any(s is not None for s in self.shard_sums)

    def usable(self, x) -> bool:
        """Shard this batch? Needs NumPy arrays (not CuPy) and shards of MIN_SHARD samples; a model with
        BatchNorm also needs to be outside our worker pool (its shards must all run at once)."""
        if self.couples_shards and in_pool_worker():
            return False
        return super().usable(x)

    def _sync(self) -> None:
        """Point the replicas at the model's current parameter and buffer dictionaries (a device move or
        a loader may replace them)."""
        for replica in self.replicas:
            for twin, layer in zip(replica.layers, self.model.layers):
                twin.params, twin.buffers = layer.params, layer.buffers
                twin.needs_input_grad = layer.needs_input_grad

    def _draw_dropout_masks(self, x, bounds, stop):
        """Let each Dropout layer draw its whole-batch mask ``(N, *input_shape)``, in layer order as the
        serial step does; hand every shard its rows."""
        for index, layer in enumerate(self.model.layers[:stop]):
            if not isinstance(layer, Dropout) or layer.rate == 0:
                continue
            mask = layer.draw_mask((len(x), *layer.input_shape), x.dtype, array_module(x))
            for replica, a, b in zip(self.replicas, bounds[:-1], bounds[1:]):
                replica.layers[index].shard_mask = mask[a:b]

    def _shard(self, job):
        """One shard's ``compute_gradients``, releasing the other shards from their ShardSums if it fails."""
        replica, x, y, loss, scale = job
        try:
            value, out = replica.compute_gradients(x, y, loss, grad_scale=scale)
            return value * scale, out
        except threading.BrokenBarrierError:
            raise
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            for shard_sum in self.shard_sums:
                if shard_sum is not None:
                    shard_sum.abort()
            raise

    def compute_gradients(self, x, y, loss) -> tuple[float, np.ndarray]:
        """Fill the model's ``layer.grads`` for the batch ``x`` ``(N, *input_shape)``, ``y`` ``(N,)`` or
        ``(N, classes)``, as ``model.compute_gradients`` would; return ``(mean loss, output (N, ...))``
        (the logits when the loss fuses with the last activation)."""
        self._sync()
        n = len(x)
        bounds = [n * s // self.threads for s in range(self.threads + 1)]
        self._draw_dropout_masks(x, bounds, self.model.fused_stop(loss))
        jobs = [(self.replicas[s], x[a:b], y[a:b], loss, (b - a) / n)
                for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        for shard_sum in self.shard_sums:
            if shard_sum is not None:
                shard_sum.reset()
                shard_sum.samples = n  # BatchNorm's sample count, known without a sum across shards
        self._error = None
        try:
            with _COUPLED_STEP_LOCK if self.couples_shards else contextlib.nullcontext():
                results = map_in_threads(self._shard, jobs, self.threads)
        except threading.BrokenBarrierError:
            if self._error is not None:  # a shard failed and made the others stop waiting: its error counts
                raise self._error from None
            raise RuntimeError("a shard of the training step waited for the others for more than "
                               f"{SHARD_SUM_TIMEOUT:.0f} s at a BatchNorm layer") from None
        for index, layer in enumerate(self.model.layers):
            for key in layer.grads:
                total = self.replicas[0].layers[index].grads[key].copy()
                for replica in self.replicas[1:]:
                    total += replica.layers[index].grads[key]
                layer.grads[key] = total
        xp = array_module(x)
        return sum(value for value, _ in results), xp.concatenate([out for _, out in results])

    def predict_proba(self, x, batch_size: int = 256) -> np.ndarray:
        """``model.predict_proba``, its batches computed on ``threads`` threads at once (inference caches
        nothing, so the same layers serve several batches)."""
        x = self.model.prepare_input(x)
        if array_module(x) is not np:
            return self.model.predict_proba(x, batch_size)
        batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
        return np.concatenate(map_in_threads(self.model.forward, batches, self.threads))

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        return self.predict_proba(x, batch_size).argmax(axis=1)
