"""Data parallelism with worker *processes*: the shards of a batch computed on several cores with no shared GIL.

:mod:`cnnlab.data_parallel` explains the idea — the gradient of a batch is the sum of its shards' gradients,
so each core can compute one shard's — and runs the shards in threads. Threads share one interpreter:
between its NumPy calls a shard holds the GIL, and a small network makes many short calls. Measured on a
2-vCPU AMD EPYC (OpenBLAS 0.3.31, one BLAS thread per shard), a LeNet-5 step of 50 images takes 7.3 ms
alone, and two such steps take 7.3 and 6.8 ms when run by two *processes* at once, but a 100-image step
split over two *threads* takes 10.8 ms. So on Linux, for models whose layers treat every sample on its own
(no BatchNorm: its shards must add up their statistics mid-step, which threads do cheaply), the extra
shards run in worker processes forked from this one:

* **Fork, once.** The first training step forks ``threads − 1`` workers. A worker inherits the model as it
  is then (its layers and work arrays); afterwards only numbers travel.
* **Parameters through shared memory.** Before each step this process copies every parameter into one
  flat array in memory shared with the workers (``mmap``, anonymous and shared: it vanishes with the
  processes, nothing on disk); the workers' layers *are* views of it. The copy is the size of the model
  (LeNet-5: 0.25 MB, 25 µs), and the user's model keeps its own arrays.
* **One message each way.** The shard's images and labels go to a worker through a pipe; the worker runs
  ``model.compute_gradients`` on them, writes its gradients into its own shared flat array and answers
  with the shard's loss and output. Meanwhile this process computes shard 0 itself. Dropout: this
  process's model draws the whole batch's masks, in layer order, as the serial step would, and each
  shard's :class:`ShardDropout` replica multiplies by its rows (sent with the images).
* **The same sums as the threads.** Gradients and losses are added in shard order (shard 0 + shard 1 +
  …) exactly as :class:`~cnnlab.data_parallel.DataParallel` adds them, so both give the same numbers, bit
  for bit (tested), and equal the serial step up to rounding.

A failing shard raises its error here (its type and message); a worker that died raises a RuntimeError.
The workers stop when the wrapper is garbage-collected, when :meth:`close` is called, or with this process.
"""

from __future__ import annotations

import copy
import ctypes
import mmap
import multiprocessing
import sys
import weakref

import numpy as np

from .engine.backend import array_module
from .engine.layers import Dropout
from .threads import one_blas_thread

#: Layers whose shards need no word from the other shards within a step: the process workers can run them.
#: (Dropout: this process draws the whole batch's masks, as the serial step would, and sends each worker
#: its rows with the images.)
INDEPENDENT_KINDS = frozenset({"Conv2D", "MaxPool2D", "AvgPool2D", "Dense", "Flatten", "ReLU", "LeakyReLU",
                               "ELU", "Sigmoid", "Tanh", "Softmax", "Dropout"})

#: Seconds to wait for a worker to stop before killing it (it is computing one shard at most).
STOP_TIMEOUT = 10.0


def processes_available() -> bool:
    """True where worker processes can be forked: Linux (macOS's system libraries are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def can_use_processes(model) -> bool:
    """True when every layer of ``model`` treats each sample on its own (see :data:`INDEPENDENT_KINDS`), its
    parameters are all of the model's dtype (they travel in one flat array), this platform forks, and this
    process may have children (a sweep's pool workers are daemons: they may not)."""
    return (processes_available() and not multiprocessing.current_process().daemon
            and all(layer.kind in INDEPENDENT_KINDS for layer in model.layers)
            and all(array.dtype == model.dtype for layer in model.layers for array in layer.params.values()))


class ShardDropout(Dropout):
    """A Dropout replica for one shard: it multiplies by its rows of the mask the model's layer drew."""

    @classmethod
    def replica_of(cls, layer: Dropout) -> "ShardDropout":
        twin = replicate(layer)
        twin.__class__ = cls
        twin.shard_mask = None
        return twin

    def draw_mask(self, shape, dtype=np.float32, xp=np):
        self._mask = self.shard_mask
        return self._mask


def replicate(layer):
    """A copy of ``layer`` that shares its parameter arrays but owns its caches, gradients and work arrays.

    A shallow copy shares everything; we then give the copy fresh dictionaries (its gradients and any
    work-array dictionary) — cached arrays are *replaced* by each forward pass, never written into, so
    sharing the stale ones until then is harmless. ``params`` and ``buffers`` stay shared on purpose.
    """
    twin = copy.copy(layer)
    for attribute, value in vars(layer).items():
        if isinstance(value, dict) and attribute not in ("params", "buffers"):
            setattr(twin, attribute, {})
    return twin


def replica_model(model):
    """A shallow copy of ``model`` whose layers are replicas (:func:`replicate`; Dropout: :class:`ShardDropout`)."""
    twin = copy.copy(model)
    twin.layers = [ShardDropout.replica_of(layer) if isinstance(layer, Dropout) else replicate(layer)
                   for layer in model.layers]
    return twin


class _FlatShared:
    """Every array of a ``[(layer index, key, shape)]`` list as a view of one flat float array in shared memory."""

    def __init__(self, entries, dtype):
        self.entries, self.dtype = entries, np.dtype(dtype)
        sizes = [int(np.prod(shape)) for _, _, shape in entries]
        self._memory = mmap.mmap(-1, max(1, sum(sizes)) * self.dtype.itemsize)  # anonymous, shared across fork
        flat = np.frombuffer(self._memory, dtype=self.dtype)
        self.views, start = [], 0
        for (_, _, shape), size in zip(entries, sizes):
            self.views.append(flat[start:start + size].reshape(shape))
            start += size


def _entries(model):
    """``(layer index, key, shape)`` of every parameter of ``model``, in layer order."""
    return [(index, key, array.shape) for index, layer in enumerate(model.layers)
            for key, array in layer.params.items()]


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed blocks of up to 32 MB for reuse instead of returning them to the OS.

    A training step allocates and frees the same few-MB arrays every time; returned to the OS, each comes
    back as fresh pages, one page fault per 4 kB, and page faults are slow in a virtual machine. Measured
    (LeNet-5, 100-image steps in two shards on a 2-vCPU VM, median of 4 rounds): 11.5 -> 10.9 ms; vgg-mini:
    no difference. Only in our own worker processes: the user's process keeps its settings. No effect
    (and no error) without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD: blocks below this come from the reusable heap
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep this much free memory at the heap's top
    except (OSError, AttributeError):
        pass


def _worker(conn, model, params: _FlatShared, grads: _FlatShared) -> None:
    """A worker's life: compute the shards it is sent, until told to stop (or the parent is gone)."""
    _keep_freed_memory()
    model = replica_model(model)  # this process's own copy anyway; its Dropout layers take the rows sent
    for (index, key, _), view in zip(params.entries, params.views):
        model.layers[index].params[key] = view  # the parent's current values, copied in before each step
    with one_blas_thread():  # the other cores are busy with the other shards
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            x, y, loss, scale, masks = message
            for index, rows in masks.items():
                model.layers[index].shard_mask = rows
            try:
                value, out = model.compute_gradients(x, y, loss, grad_scale=scale)
                for (index, key, _), view in zip(grads.entries, grads.views):
                    view[...] = model.layers[index].grads[key]
                conn.send(("ok", value * scale, out))
            except Exception as exc:  # the parent raises it (the same type where it pickles); we keep serving
                try:
                    conn.send(("error", exc))
                except Exception:
                    conn.send(("error", RuntimeError(f"a shard of the training step failed in a worker "
                                                     f"process: {type(exc).__name__}: {exc}")))
    conn.close()


def _stop(workers) -> None:
    """Tell every worker to stop, wait a little, then make sure (called by close(), GC or interpreter exit)."""
    for conn, process in workers:
        try:
            conn.send(None)
        except OSError:
            pass
    for conn, process in workers:
        process.join(STOP_TIMEOUT)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()


#: Smallest shard worth a worker: the last, short batch of an epoch may be trained serially.
MIN_SHARD = 8


class ShardedStep:
    """What the data-parallel wrappers share: a training step that shards the batch when :meth:`usable`
    says so (subclasses define ``compute_gradients`` for the whole batch), else the model's serial step."""

    def usable(self, x) -> bool:
        """Shard this batch? NumPy arrays (not CuPy) and shards of at least :data:`MIN_SHARD` samples."""
        return array_module(x) is np and len(x) >= self.threads * MIN_SHARD

    def train_step(self, x, y, loss, optimizer) -> tuple[float, np.ndarray]:
        """One step of mini-batch gradient descent on the whole batch; returns (batch loss, output)."""
        if not self.usable(x):
            return self.model.train_step(x, y, loss, optimizer)
        value, out = self.compute_gradients(self.model.prepare_input(x), y, loss)
        optimizer.step(self.model.parameters_and_grads())
        return value, out


class ProcessDataParallel(ShardedStep):
    """Trains ``model`` on ``threads`` shards of each batch, shards 1… in forked worker processes.

    The same interface and the same numbers as :class:`cnnlab.data_parallel.DataParallel`:
    ``train_step(x, y, loss, optimizer) -> (loss, output)`` leaves the summed gradients in the model's
    layers. Only for models :func:`can_use_processes` accepts.
    """

    def __init__(self, model, threads: int):
        self.model = model
        self.threads = threads
        self._workers = None  # [(connection, process)], forked on the first step
        self._params = self._grads = None
        self._shard0 = None  # shard 0's replica of the model, computed in this process (made with the workers)
        self._finalizer = None

    # -- the workers ---------------------------------------------------------------------------------
    def _start(self) -> None:
        dtype = self.model.dtype
        entries = _entries(self.model)
        self._params = _FlatShared(entries, dtype)
        self._grads = [_FlatShared(entries, dtype) for _ in range(self.threads - 1)]
        context = multiprocessing.get_context("fork")
        workers = []
        for grads in self._grads:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker, args=(child_end, self.model, self._params, grads),
                                      daemon=True, name="cnnlab-shard")
            process.start()
            child_end.close()
            workers.append((parent_end, process))
        self._workers = workers
        self._shard0 = replica_model(self.model)  # shard 0, computed here: replicas, so Dropout takes its rows
        self._finalizer = weakref.finalize(self, _stop, workers)

    @staticmethod
    def _died(process) -> RuntimeError:
        process.join(STOP_TIMEOUT)
        return RuntimeError(f"a training worker process (pid {process.pid}) died during the step "
                            f"(exit code {process.exitcode}); the next step starts a new one")

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (none before the first step or after :meth:`close`)."""
        return [process.pid for _, process in self._workers or []]

    def close(self) -> None:
        """Stop the worker processes (a later step forks new ones)."""
        if self._finalizer is not None:
            self._finalizer()
        self._workers = self._finalizer = None

    def _ensure_started(self) -> None:
        structure = _entries(self.model)
        if self._workers is not None and (self._params.entries != structure or self._params.dtype != self.model.dtype):
            self.close()  # the model changed shape or dtype: the workers' copies are stale
        if self._workers is None or any(not process.is_alive() for _, process in self._workers):
            self.close()
            self._start()

    # -- the step ------------------------------------------------------------------------------------
    def compute_gradients(self, x, y, loss) -> tuple[float, np.ndarray]:
        """Fill the model's ``layer.grads`` for the batch; return ``(mean loss, output (N, ...))``."""
        self._ensure_started()
        for (index, key, _), view in zip(self._params.entries, self._params.views):
            view[...] = self.model.layers[index].params[key]
        n = len(x)
        bounds = [n * s // self.threads for s in range(self.threads + 1)]
        shard0 = self._shard0
        for twin, layer in zip(shard0.layers, self.model.layers):  # a loader may replace these dictionaries
            twin.params, twin.buffers, twin.needs_input_grad = layer.params, layer.buffers, layer.needs_input_grad
        # Dropout: the model's own layers draw the whole batch's masks, in layer order, as the serial step does.
        masks = {index: layer.draw_mask((n, *layer.input_shape), x.dtype, np)
                 for index, layer in enumerate(self.model.layers[:self.model.fused_stop(loss)])
                 if isinstance(layer, Dropout) and layer.rate > 0}
        for index, mask in masks.items():
            shard0.layers[index].shard_mask = mask[:bounds[1]]
        values, outs, failure, sent = [], [], None, []
        for (conn, process), a, b in zip(self._workers, bounds[1:-1], bounds[2:]):
            try:
                conn.send((x[a:b], y[a:b], loss, (b - a) / n, {i: mask[a:b] for i, mask in masks.items()}))
                sent.append((conn, process))
            except OSError:  # its end of the pipe is closed: the worker is gone
                failure = failure or self._died(process)
        scale = bounds[1] / n
        try:
            with one_blas_thread():
                value, out = shard0.compute_gradients(x[:bounds[1]], y[:bounds[1]], loss, grad_scale=scale)
            values.append(value * scale)
            outs.append(out)
        except Exception as exc:  # raised below, once the workers' answers are read (the pipes stay in step)
            failure = failure or exc
        for conn, process in sent:  # read every answer, even after a failure: the pipes stay in step
            try:
                answer = conn.recv()
            except (EOFError, OSError):
                failure = failure or self._died(process)
                continue
            if answer[0] == "error":
                failure = failure or answer[1]
            else:
                values.append(answer[1])
                outs.append(answer[2])
        if failure is not None:
            raise failure
        for (index, key, _), *views in zip(self._grads[0].entries, *(g.views for g in self._grads)):
            total = shard0.layers[index].grads[key].copy()
            for view in views:  # shard order, as DataParallel adds them
                total += view
            self.model.layers[index].grads[key] = total
        return sum(values), np.concatenate(outs)

    def __getstate__(self):
        raise TypeError("ProcessDataParallel cannot be pickled (its workers are processes): pickle its .model")
