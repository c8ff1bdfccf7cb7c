"""Admission for ``/api/predict``: a few requests at work, a short queue, and a quick "busy" beyond it.

Without it, every request that arrived went straight to the thread pool (40 threads), so under load up
to 40 pictures were decoded at once (memory) and each waited behind all the others (64 clients: p99
3.4-4.8 s). A request that would wait longer than a person tolerates is better answered at once with
503 and ``Retry-After``: the page shows "busy" and asks again, a script backs off.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

#: Pictures recognized at the same time. The model runs one at a time anyway (a lock); two workers let
#: one picture be decoded and preprocessed while another is in the model, on a 2-core machine.
DEFAULT_WORKERS = 2
#: Requests allowed to wait for a worker. A page drawing takes ~10-15 ms of CPU with its feature maps,
#: so 16 waiting is about a quarter of a second of queue; the 17th is told to come back instead.
DEFAULT_QUEUE = 16
RETRY_AFTER_S = 1


class Busy(Exception):
    """The queue is full: answer 503 with ``Retry-After`` at once."""


class Gate:
    """``async with gate.admit(): ...`` in the request; ``async with gate.work(): ...`` around the work.

    ``admit`` counts the request once its body has arrived and raises :class:`Busy` when
    ``workers + queue`` requests are already in; ``work`` waits for one of the ``workers`` slots.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE):
        if workers < 1 or queue < 0:
            raise ValueError(f"expected workers >= 1 and queue >= 0, received {workers} and {queue}")
        self.workers = workers
        self.capacity = workers + queue
        self.admitted = 0  # only touched on the event loop's thread: no lock needed
        self._slots: asyncio.Semaphore | None = None  # made inside the running event loop ...
        self._loop = None  # ... and again if the app is served by another loop (test clients do that)

    @asynccontextmanager
    async def admit(self):
        if self.admitted >= self.capacity:
            raise Busy(f"the server is busy ({self.admitted} requests in progress); retry in {RETRY_AFTER_S} s")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @asynccontextmanager
    async def work(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.workers), loop
        async with self._slots:
            yield
