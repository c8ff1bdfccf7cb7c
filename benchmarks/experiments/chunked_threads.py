"""Parallelism inside one operation: a batch split into contiguous parts, one part per CPU core.

NumPy runs copies and element-wise work on one core; only BLAS uses several, and on a convolution's small
GEMMs it gains little. So the heavy kernels (:mod:`cnnlab.engine.ops.conv`, pooling) split the *batch* of one
call into ``threads`` contiguous parts ("slots") and work on them at once, the way PyTorch parallelises
inside each operator. The layers and the model stay serial: a learner stepping through a training step
sees forward, loss, backward and update, and only the kernels know there are several cores.

    parallel_for(fn, n)      # fn(slot, start, stop) for each slot's samples [start, stop), at once

Why threads work: NumPy releases the GIL inside ufuncs, copies and BLAS calls, which is where the time
goes. While the slots run, BLAS is limited to one thread (``threadpoolctl``): the cores are already
busy, and OpenBLAS threads fighting ours would be slower. Slot 0 runs in the calling thread.

Results never depend on timing: slot ``s`` always gets the same samples, and a kernel that sums over
the batch (dL/dW) adds the slots' partial sums in slot order. They do depend (by rounding) on the number
of threads, as with any parallel sum; a resumed run uses the same count.

How many threads: ``$CNNLAB_THREADS`` (a positive integer) when set, else the cores this process may
run on. Parallel sweeps set ``CNNLAB_THREADS=cores/jobs`` in their workers, so that ``jobs`` processes
do not each start one thread per core. A ``parallel_for`` called from inside a slot runs serially.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from cnnlab.threads import default_threads  # noqa: F401  ($CNNLAB_THREADS, else the usable cores)

#: Below this many samples per slot a thread hand-off (tens of microseconds) costs more than it saves.
MIN_SAMPLES_PER_SLOT = 4


def slot_bounds(n: int, slots: int) -> list[tuple[int, int]]:
    """``slots`` contiguous, nearly equal ranges covering ``[0, n)``: ``[(0, n1), (n1, n2), ...]``."""
    edges = [n * s // slots for s in range(slots + 1)]
    return list(zip(edges[:-1], edges[1:]))


_POOL: list[ThreadPoolExecutor] = []   # one process-wide pool, grown on demand
_POOL_LOCK = threading.Lock()
_inside = threading.local()            # .active: this thread is running a slot


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL or _POOL[0]._max_workers < workers:
            _POOL[:] = [ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnnlab-ops")]
        return _POOL[0]


# BLAS at one thread while slots run: the engine's own helper (first caller in limits, last one out restores)
from cnnlab.threads import _one_blas_thread as one_blas_thread  # noqa: E402


@contextlib.contextmanager
def serial():
    """Inside this block, :func:`parallel_for` in this thread runs its work in one call, here.

    For callers that already keep every core busy with threads of their own (the data-parallel step of
    :mod:`cnnlab.data_parallel` runs one shard of the batch per core): kernels inside them must not start
    more threads.
    """
    before = getattr(_inside, "active", False)
    _inside.active = True
    try:
        yield
    finally:
        _inside.active = before


def _run_slot(fn, slot, start, stop):
    _inside.active = True
    try:
        return fn(slot, start, stop)
    finally:
        _inside.active = False


def parallel_for(fn, n: int, threads: int | None = None) -> list:
    """``[fn(slot, start, stop) for each slot]`` over ``slot_bounds(n, slots)``, the slots run at once.

    ``slots`` is ``threads`` (default :func:`default_threads`), fewer when the batch is too small to
    share; ``slots == 1`` is a plain call ``fn(0, 0, n)`` in this thread. The results come back in slot
    order; the first exception propagates once every slot has stopped (none is left writing into arrays
    the caller may reuse).
    """
    threads = default_threads() if threads is None else threads
    slots = max(1, min(threads, n // MIN_SAMPLES_PER_SLOT))
    if slots == 1 or getattr(_inside, "active", False):
        return [fn(0, 0, n)]
    bounds = slot_bounds(n, slots)
    with one_blas_thread():
        pool = _pool(slots - 1)
        helpers = [pool.submit(_run_slot, fn, s, a, b) for s, (a, b) in enumerate(bounds) if s > 0]
        try:
            first = _run_slot(fn, 0, *bounds[0])
        finally:
            for helper in helpers:  # wait for all, even when slot 0 raised; their own errors come next
                helper.exception()
        return [first, *(helper.result() for helper in helpers)]
