"""Data parallelism inside one training step: every CPU core works on its own shard of the batch.

NumPy runs element-wise operations and copies on one core; only the matrix products (BLAS) use several.
On a small CPU most of a convolution's time is copies (im2col/col2im) and element-wise work, so a plain
training step leaves the other cores idle most of the time. Mini-batch gradient descent gives us an easy
way out: the gradient of the batch loss is a sum over samples, so it can be computed on shards of the
batch independently and added up::

    L = (1/N) Σ_n ℓ_n = Σ_s (N_s / N) · L_s          L_s = (1/N_s) Σ_{n in shard s} ℓ_n
    ∂L/∂θ = Σ_s (N_s / N) · ∂L_s/∂θ

So one step becomes: split the batch into ``threads`` shards; in one thread per shard, run the forward and
backward passes of the shard through a *replica* of the layers, starting from the shard's loss gradient
scaled by ``N_s / N``; add the replicas' parameter gradients; take one optimizer step, as the serial step
would. The result equals the serial step up to floating-point rounding (sums are added in another order).

Threads (not processes) work because NumPy releases the GIL inside ufuncs, copies and BLAS calls, which is
where the time goes; Python itself runs only a few hundred lines per step. A replica shares the parameter
arrays with the model's layer (so nothing needs copying and the optimizer's in-place update is seen by
all), but has its own caches, gradients and work buffers. Inside the shards BLAS is limited to one thread
(with ``threadpoolctl``): the cores are already busy, and OpenBLAS threads fighting each other is slower.

Dropout draws random masks: to draw exactly what the serial step would, the model's own Dropout layers
draw their whole-batch masks first, in layer order, and each replica uses its shard's rows. BatchNorm is
the one layer whose output for a sample depends on the rest of the batch (it normalises with the batch
statistics): its replicas meet at a :class:`ShardSum` — each hands in its shard's per-channel sums, waits
until every shard has, and continues with the whole batch's — twice in the forward pass (mean, variance)
and once in the backward pass. A model too small to gain anything, or a batch too small to split, trains
with the plain serial step (:meth:`Sequential.train_step` decides).

Inference needs no replicas: a forward pass in inference mode caches nothing, so the same layers can
serve several batches at once; :meth:`Sequential.predict_proba` runs its batches through
:func:`map_in_threads`, whatever the layers.

How many threads: a model built with ``threads=None`` asks :func:`default_threads` at every step, which
reads the environment variable ``CNNLAB_THREADS`` (a positive integer) and otherwise counts the cores this
process may run on. Parallel sweeps set ``CNNLAB_THREADS=cores/jobs`` in their workers, so that ``jobs``
processes do not each start one thread per core.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backend import array_module
from .errors import ConfigError
from .timing import backward_flops, forward_flops

#: Layers the sharded step can split a batch for: those that treat every sample on its own, Dropout (its
#: masks are drawn for the whole batch first) and BatchNorm (its statistics are summed across the shards).
SHARDABLE_KINDS = frozenset({"Conv2D", "MaxPool2D", "AvgPool2D", "Dense", "Flatten", "ReLU", "LeakyReLU",
                             "ELU", "Sigmoid", "Tanh", "Softmax", "Dropout", "BatchNorm"})

#: Seconds a shard waits at a :class:`ShardSum` for the others before giving up (they are computing the
#: same layers on as many samples, so anything close to this means a thread is gone, not slow).
SHARD_SUM_TIMEOUT = 300.0

#: Below this many floating-point operations per training sample, thread hand-offs cost more than they
#: save (an MLP step takes well under a millisecond): such models train serially.
MIN_FLOPS_PER_SAMPLE = 500_000

#: Smallest shard worth a thread: the last, short batch of an epoch may be trained serially.
MIN_SHARD = 8


#: Environment variable overriding :func:`default_threads` (set by parallel sweeps in their workers).
THREADS_VARIABLE = "CNNLAB_THREADS"


def default_threads() -> int:
    """Threads for a model built with ``threads=None``: ``$CNNLAB_THREADS`` when set, else the cores this
    process may run on (``os.sched_getaffinity`` where available)."""
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{THREADS_VARIABLE} must be a positive integer (threads per process), "
                              f"received {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def can_shard(model) -> bool:
    """True when every layer handles samples independently and the model is big enough to gain."""
    if any(layer.kind not in SHARDABLE_KINDS for layer in model.layers):
        return False
    flops = sum(forward_flops(layer, 1) + backward_flops(layer, 1) for layer in model.layers)
    return flops >= MIN_FLOPS_PER_SAMPLE


def replicate(layer):
    """A copy of ``layer`` that shares its parameter arrays but owns its caches, gradients and buffers.

    A shallow copy shares everything; we then give the copy fresh dictionaries (its gradients and any
    work-buffer dictionary) — cached arrays are *replaced* by each forward pass, never written into, so
    sharing the stale ones until then is harmless. ``params`` and ``buffers`` stay shared on purpose.
    """
    twin = copy.copy(layer)
    for attribute, value in vars(layer).items():
        if isinstance(value, dict) and attribute not in ("params", "buffers"):
            setattr(twin, attribute, {})
    return twin


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_PREFIX = "cnnlab-shard"
_POOL_LOCK = threading.Lock()
_CONTROLLER: list = []  # [threadpoolctl controller or None], filled on first use


def _pool(workers: int) -> ThreadPoolExecutor:
    """One process-wide pool per size: models come and go (sweeps build many), worker threads stay."""
    with _POOL_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=_POOL_PREFIX)
        return _POOLS[workers]


def _blas_limiter():
    """The ``threadpoolctl`` controller, or None when the package is missing (then we do not shard)."""
    with _POOL_LOCK:
        if not _CONTROLLER:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:  # pragma: no cover - depends on the environment
                _CONTROLLER.append(None)
            else:
                _CONTROLLER.append(ThreadpoolController())
        return _CONTROLLER[0]


_BLAS_LOCK = threading.Lock()
_blas_users = 0       # map_in_threads calls running now, in any thread
_blas_limit = None    # the limiter the first of them set up: it restores what BLAS had before


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS limited to one thread while the block runs, however many threads are inside one at a time.

    The limit is process-wide and ``threadpoolctl`` restores, on leaving, what it saw on entering. Two
    overlapping calls each doing their own limit() would break it: the second sees (and later restores)
    the first one's limit of 1, leaving the process at one BLAS thread for good, or the first restores the
    full count while the second still runs. So the first caller in sets the limit, the last one out
    restores it.
    """
    global _blas_users, _blas_limit
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limit = _blas_limiter().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


def map_in_threads(fn, items: list, threads: int) -> list:
    """``[fn(item) for item in items]``, computed by ``threads`` threads at once (this one included).

    Each thread takes the next item not yet taken, so uneven items balance themselves; BLAS runs with one
    thread meanwhile. The first exception stops the taking of new items and propagates once every thread
    has stopped (none is left working on arrays the caller may reuse). The results come back in the order
    of ``items``.
    """
    if threads < 2 or len(items) < 2 or _blas_limiter() is None:
        return [fn(item) for item in items]
    results = [None] * len(items)
    taken = itertools.count()  # next() on it is atomic: a lock-free work queue
    failed = threading.Event()

    def work():
        try:
            while not failed.is_set() and (index := next(taken)) < len(items):
                results[index] = fn(items[index])
        except BaseException:
            failed.set()
            raise

    with _one_blas_thread():
        helpers = [_pool(threads - 1).submit(work) for _ in range(min(threads, len(items)) - 1)]
        try:
            work()
        finally:
            for helper in helpers:  # wait for all, even when work() raised; their own errors come next
                helper.exception()
        for helper in helpers:
            helper.result()
    return results


def can_map(x) -> bool:
    """Inference batches of ``x`` may run in threads: NumPy arrays (CuPy keeps its own GPU streams)."""
    return array_module(x) is np


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
        self.samples = 0  # samples in the whole batch of the current step (set by ShardedStep)
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


#: Held by a sharded step whose shards wait for each other (BatchNorm): such a step needs all its shards
#: running at once, so two of them must not share the worker pool at the same time.
_COUPLED_STEP_LOCK = threading.Lock()


def _in_pool_worker() -> bool:
    """True inside one of our pool's threads (a step started there could not get threads of its own)."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)


class ShardedStep:
    """Computes the gradients of a training step of ``model`` on ``threads`` shards of the batch at once.

    Use through :meth:`Sequential.train_step`; ``step.gradients(x, y, loss, stop)`` leaves the summed
    gradients in the model's layers (``layer.grads``) exactly where a serial backward pass would.
    """

    def __init__(self, model, threads: int):
        self.model = model
        self.threads = threads
        self.replicas = [[replicate(layer) for layer in model.layers] for _ in range(threads)]
        self.shard_sums = []
        for index, layer in enumerate(model.layers):
            if layer.kind == "BatchNorm":  # its replicas add up their batch statistics at a ShardSum
                shard_sum = ShardSum(threads)
                self.shard_sums.append(shard_sum)
                for shard, replica in enumerate(self.replicas):
                    replica[index].shard_sum, replica[index].shard_index = shard_sum, shard
        self._error = None  # the first error of a shard in this step (the others then see a broken ShardSum)

    def usable(self, x) -> bool:
        """Shard this batch? Needs threadpoolctl, NumPy arrays (not CuPy) and shards of MIN_SHARD samples;
        a model with BatchNorm also needs to be outside our worker pool (its shards must all run at once)."""
        if self.shard_sums and _in_pool_worker():
            return False
        return _blas_limiter() is not None and array_module(x) is np and len(x) >= self.threads * MIN_SHARD

    def _sync(self) -> None:
        """Point the replicas at the model's current parameter and buffer dictionaries (a device move
        replaces them)."""
        for replica in self.replicas:
            for twin, layer in zip(replica, self.model.layers):
                twin.params, twin.needs_input_grad = layer.params, layer.needs_input_grad
                twin.buffers = layer.buffers  # BatchNorm's running averages, updated by shard 0

    def _draw_dropout_masks(self, x, bounds, stop):
        """Let each Dropout layer draw its whole-batch mask ``(N, *input_shape)``, in layer order as the
        serial step does; hand every replica its shard's rows (``fixed_mask``: the replica then reuses them
        instead of drawing)."""
        for index, layer in enumerate(self.model.layers[:stop]):
            if layer.kind != "Dropout" or layer.rate == 0:
                continue
            mask = layer.draw_mask((len(x), *layer.input_shape), x.dtype, array_module(x))
            for replica, a, b in zip(self.replicas, bounds[:-1], bounds[1:]):
                replica[index].fixed_mask, replica[index]._mask = True, mask[a:b]

    def _shard(self, layers, x, y, loss, stop, scale):
        """Forward + backward of one shard through one replica's ``layers``.

        ``x``: the shard's inputs ``(n, *input_shape)``; ``y``: its targets ``(n,)`` or ``(n, classes)``;
        ``stop``: run ``layers[:stop]`` and use the loss's fused ``*_from_logits`` (None: every layer);
        ``scale``: ``n / N``, the shard's share of the batch. Leaves the shard's gradients, times
        ``scale``, in the replica's ``grads``; returns ``(scale * shard loss, output (n, *output_shape))``
        (the logits when ``stop`` is set).
        """
        out = x
        for layer in layers[:stop]:
            out = layer.forward(out, training=True)
        if stop is not None:
            value, grad = loss.forward_from_logits(out, y), loss.grad_from_logits(out, y)
        else:
            value, grad = loss.forward(out, y), loss.grad(out, y)
        grad = grad.astype(out.dtype, copy=False) * out.dtype.type(scale)
        for layer in reversed(layers[:stop]):
            grad = layer.backward(grad)
        return value * scale, out

    def _guarded_shard(self, job):
        """:meth:`_shard`, releasing the other shards from their ShardSums if this one fails."""
        try:
            return self._shard(*job)
        except threading.BrokenBarrierError:
            raise
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            for shard_sum in self.shard_sums:
                shard_sum.abort()
            raise

    def gradients(self, x, y, loss, stop):
        """Fill the model's ``layer.grads`` for the batch ``x`` ``(N, *input_shape)``, ``y`` ``(N,)`` or
        ``(N, classes)``, as a serial backward pass would; return ``(mean loss, output (N, *output_shape))``
        (the logits when ``stop`` leaves the last activation to the loss)."""
        self._sync()
        n = len(x)
        bounds = [n * s // self.threads for s in range(self.threads + 1)]
        self._draw_dropout_masks(x, bounds, stop)
        jobs = [(self.replicas[s], x[a:b], y[a:b], loss, stop, (b - a) / n)
                for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
        for shard_sum in self.shard_sums:
            shard_sum.reset()
            shard_sum.samples = n  # BatchNorm's value count m, known without a sum across shards
        self._error = None
        try:
            with _COUPLED_STEP_LOCK if self.shard_sums else contextlib.nullcontext():
                results = map_in_threads(self._guarded_shard, jobs, self.threads)
        except threading.BrokenBarrierError:
            if self._error is not None:  # a shard failed and made the others stop waiting: its error counts
                raise self._error from None
            raise RuntimeError("a shard of the training step waited for the others for more than "
                               f"{SHARD_SUM_TIMEOUT:.0f} s at a BatchNorm layer") from None
        xp = array_module(x)
        for index, layer in enumerate(self.model.layers):
            for key in layer.grads:
                total = self.replicas[0][index].grads[key].copy()
                for replica in self.replicas[1:]:
                    total += replica[index].grads[key]
                layer.grads[key] = total
        return sum(value for value, _ in results), xp.concatenate([out for _, out in results])
