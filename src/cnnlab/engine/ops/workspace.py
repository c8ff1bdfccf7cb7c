"""Scratch arrays shared by every layer of one thread.

A convolution's backward pass needs two large temporaries — the column gradients ``W.T @ δ`` ``(C·kh·kw,
N·G)`` and the padded image they fold back into — that live only while that one layer's backward runs.
Allocating them fresh each time costs page faults on tens of MB per call; keeping one per layer costs the
sum of all layers' sizes in memory. One flat array per purpose and thread, grown to the largest request
and viewed at the shape each layer needs, costs only the largest. (Each thread has its own: the
data-parallel step runs layers on several threads at once.)

Contents are undefined on return: callers overwrite every element they read.
"""

from __future__ import annotations

import math
import threading

import numpy as np

_local = threading.local()


def scratch(purpose: str, shape, dtype, xp=np):
    """A ``shape`` array of ``dtype`` (module ``xp``) for ``purpose``, reused by this thread's later calls."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    key = (purpose, np.dtype(dtype).str, xp.__name__)
    size = math.prod(shape)
    flat = pool.get(key)
    if flat is None or flat.size < size:
        flat = pool[key] = xp.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)
