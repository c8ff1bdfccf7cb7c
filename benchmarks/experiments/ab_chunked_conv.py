"""A/B, in one process: the engine's whole-batch Conv2D against the cache-blocked, threaded prototype.

    python benchmarks/experiments/ab_chunked_conv.py            # vgg-mini and lenet5, serial and sharded step

Both variants train the same model on the same random batches, alternating, median of 6 timed rounds
(one warm-up). Prints ms per training step of 100 images and the ratio new/old (< 1: the prototype wins).
The figures of 2026-12-01 are in docs/performance.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

import chunked_conv as K  # noqa: E402

from cnnlab.training.presets import build  # noqa: E402
from cnnlab.data_parallel import training_step  # noqa: E402
from cnnlab.engine.layers.conv import Conv2D  # noqa: E402
from cnnlab.engine.losses import get_loss  # noqa: E402
from cnnlab.engine.optim import Adam  # noqa: E402


class ChunkedConv2D(Conv2D):
    """Conv2D whose forward/backward run the chunked kernels (columns recomputed in backward).

    Under the sharded step (model threads > 1) each shard's thread gets its own work arrays and the
    kernels run serially in it (``kernel_threads = 1``): the cores are already busy with shards.
    """

    kernel_threads = None

    @property
    def workspace(self):
        return self._workspaces.setdefault(threading.get_ident(), K.Workspace())

    def forward(self, x, training=False, keep_cache=False):
        self.check_input(x)
        x = x.astype(self.dtype, copy=False)
        if training or keep_cache:
            self._x = x
        return K.conv_forward(x, self.params["W"], self.params["b"] if self.use_bias else None,
                              self.geometry, self.workspace, threads=self.kernel_threads)

    def backward(self, grad_out):
        self.grads["W"], db = K.conv_weight_grad(self._x, grad_out, self.geometry, self.workspace,
                                                     threads=self.kernel_threads)
        if self.use_bias:
            self.grads["b"] = db
        if not self.needs_input_grad:
            return None
        return K.conv_input_grad(grad_out, self.params["W"], self.geometry, self.workspace,
                                 self._transposed_geometry,
                                 threads=self.kernel_threads)


def make(arch: str, chunked: bool, threads: int):
    model = build(arch, seed=0)
    if chunked:
        for layer in model.layers:
            if layer.kind == "Conv2D":
                layer.__class__ = ChunkedConv2D
                layer._x, layer._workspaces = None, {}
                layer.kernel_threads = 1 if threads > 1 else None
    return training_step(model, threads)


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((500, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 500)
    loss = get_loss("crossentropy")
    for arch in ("vgg-mini", "lenet5"):
        for threads in (1, 2):
            models = {name: make(arch, name == "chunked", threads) for name in ("whole-batch", "chunked")}
            optimizers = {name: Adam() for name in models}
            times = {name: [] for name in models}
            for _ in range(7):
                for name, model in models.items():
                    start = time.perf_counter()
                    for i in range(0, 500, 100):
                        model.train_step(x[i:i + 100], y[i:i + 100], loss, optimizers[name])
                    times[name].append((time.perf_counter() - start) * 1e3 / 5)
            old, new = (statistics.median(times[name][1:]) for name in models)
            print(f"{arch:<9} model threads {threads}: whole-batch {old:6.1f} ms/step, chunked {new:6.1f}, "
                  f"chunked/whole {new / old:.2f}")


if __name__ == "__main__":
    main()
