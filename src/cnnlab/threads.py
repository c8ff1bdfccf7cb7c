"""Threads for NumPy work: a process-wide pool, one BLAS thread inside it, and how many threads to use.

NumPy releases the GIL inside ufuncs, copies and BLAS calls, so several Python threads can keep several
cores busy on array work. :func:`map_in_threads` is the one way cnnlab does that: the data-parallel training
step (:mod:`cnnlab.data_parallel`), evaluation over batches and data augmentation use it. While it runs,
BLAS is limited to one thread (``threadpoolctl``): the cores are already busy, and OpenBLAS threads
fighting our threads is slower.

How many threads: :func:`default_threads` reads the environment variable ``CNNLAB_THREADS`` (a positive
integer) and otherwise counts the cores this process may run on. Parallel sweeps set
``CNNLAB_THREADS=cores/jobs`` in their workers, so that ``jobs`` processes do not each start one thread per
core.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .engine.backend import array_module
from .engine.ops import conv_kernels
from .engine.errors import ConfigError

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


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_PREFIX = "cnnlab-worker"
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
def one_blas_thread():
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
            conv_kernels.BLAS_THREADS = 1  # the convolutions may cut the batch into cache-sized chunks
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None
                conv_kernels.BLAS_THREADS = None


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

    with one_blas_thread():
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


def in_pool_worker() -> bool:
    """True inside one of our pool's threads (work started there cannot get threads of its own)."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)


def blas_limit_available() -> bool:
    """True when ``threadpoolctl`` is installed (without it, nothing runs in threads)."""
    return _blas_limiter() is not None
