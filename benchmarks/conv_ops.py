"""Micro-benchmark: forward and backward of every conv/pool layer of lenet5 and vgg-mini, cnnlab vs PyTorch.

Usage::

    PYTHONPATH=src python benchmarks/conv_ops.py [--repeats 20] [--threads 2] [--batch 100]

For each layer shape (batch 100, MNIST 28x28, float32) we time ``forward(x, training=True)`` and
``backward(grad)`` of cnnlab's layer and of the equivalent ``torch.nn`` module (autograd backward from the
same output gradient), alternating the two frameworks so machine load hits both alike, and print medians
in milliseconds and the ratio torch / cnnlab (> 1 means cnnlab is faster). The first layer of each network
is benchmarked as in training: no gradient w.r.t. the input (the data) for either framework. The figures are
for information only; nothing asserts on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_parser.add_argument("--repeats", type=int, default=20)
_parser.add_argument("--threads", type=int, default=2, help="BLAS threads for NumPy and torch (default 2)")
_parser.add_argument("--batch", type=int, default=100)
ARGS = _parser.parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads its BLAS
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("this benchmark compares with PyTorch: pip install torch")

from cnnlab.engine.layers import AvgPool2D, Conv2D, MaxPool2D  # noqa: E402

# (network, label, per-sample input shape, cnnlab layer, torch module, first layer?)
CASES = [
    ("lenet5", "conv 6@5x5 pad 2", (1, 28, 28), lambda: Conv2D(6, 5, padding=2),
     lambda: torch.nn.Conv2d(1, 6, 5, padding=2), True),
    ("lenet5", "avgpool 2", (6, 28, 28), lambda: AvgPool2D(2), lambda: torch.nn.AvgPool2d(2), False),
    ("lenet5", "conv 16@5x5", (6, 14, 14), lambda: Conv2D(16, 5), lambda: torch.nn.Conv2d(6, 16, 5), False),
    ("lenet5", "avgpool 2", (16, 10, 10), lambda: AvgPool2D(2), lambda: torch.nn.AvgPool2d(2), False),
    ("vgg-mini", "conv 16@3x3 same", (1, 28, 28), lambda: Conv2D(16, 3, padding="same"),
     lambda: torch.nn.Conv2d(1, 16, 3, padding=1), True),
    ("vgg-mini", "conv 16@3x3 same", (16, 28, 28), lambda: Conv2D(16, 3, padding="same"),
     lambda: torch.nn.Conv2d(16, 16, 3, padding=1), False),
    ("vgg-mini", "maxpool 2", (16, 28, 28), lambda: MaxPool2D(2), lambda: torch.nn.MaxPool2d(2), False),
    ("vgg-mini", "conv 32@3x3 same", (16, 14, 14), lambda: Conv2D(32, 3, padding="same"),
     lambda: torch.nn.Conv2d(16, 32, 3, padding=1), False),
    ("vgg-mini", "conv 32@3x3 same", (32, 14, 14), lambda: Conv2D(32, 3, padding="same"),
     lambda: torch.nn.Conv2d(32, 32, 3, padding=1), False),
    ("vgg-mini", "maxpool 2", (32, 14, 14), lambda: MaxPool2D(2), lambda: torch.nn.MaxPool2d(2), False),
]


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_case(shape, make_ours, make_torch, first: bool, batch: int, repeats: int):
    """Median (forward, backward) seconds for cnnlab and for torch on one layer shape."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    ours = make_ours()
    ours.build(shape, rng, dtype=np.float32)
    ours.needs_input_grad = not first
    module = make_torch()
    xt = torch.from_numpy(x.copy()).requires_grad_(not first)
    grad = rng.standard_normal((batch, *ours.output_shape), dtype=np.float32)
    gt = torch.from_numpy(grad.copy())

    state = {}

    def ours_fwd():
        state["y"] = ours.forward(x, training=True)

    def ours_bwd():
        ours.backward(grad)

    def torch_fwd():
        state["yt"] = module(xt)

    def torch_bwd():
        module.zero_grad(set_to_none=True)
        xt.grad = None
        state["yt"].backward(gt)

    times = {name: [] for name in ("ours_fwd", "ours_bwd", "torch_fwd", "torch_bwd")}
    for rep in range(repeats + 2):  # two warm-up rounds
        pairs = [("ours_fwd", ours_fwd), ("ours_bwd", ours_bwd), ("torch_fwd", torch_fwd), ("torch_bwd", torch_bwd)]
        if rep % 2:  # alternate who goes first
            pairs = pairs[2:] + pairs[:2]
        for name, fn in pairs:
            t = _clock(fn)
            if rep >= 2:
                times[name].append(t)
    return {name: float(np.median(v)) for name, v in times.items()}


def main() -> None:
    torch.set_num_threads(ARGS.threads)
    print(f"batch {ARGS.batch}, float32, {ARGS.threads} threads, median of {ARGS.repeats}; "
          f"numpy {np.__version__}, torch {torch.__version__}")
    header = f"{'network':<9} {'layer':<17} {'input':<12} {'fwd ms':>7} {'torch':>7} {'ratio':>6}   " \
             f"{'bwd ms':>7} {'torch':>7} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    totals: dict[str, np.ndarray] = {}
    for net, label, shape, make_ours, make_torch, first in CASES:
        t = bench_case(shape, make_ours, make_torch, first, ARGS.batch, ARGS.repeats)
        row = np.array([t["ours_fwd"], t["torch_fwd"], t["ours_bwd"], t["torch_bwd"]]) * 1e3
        totals[net] = totals.get(net, 0) + row
        label_in = "x".join(map(str, shape))
        print(f"{net:<9} {label:<17} {label_in:<12} {row[0]:7.2f} {row[1]:7.2f} {row[1] / row[0]:6.2f}   "
              f"{row[2]:7.2f} {row[3]:7.2f} {row[3] / row[2]:6.2f}{'  (no dx)' if first else ''}")
    print("-" * len(header))
    for net, row in totals.items():
        ours, theirs = row[0] + row[2], row[1] + row[3]
        print(f"{net:<9} {'all conv+pool':<17} {'':<12} {row[0]:7.2f} {row[1]:7.2f} {row[1] / row[0]:6.2f}   "
              f"{row[2]:7.2f} {row[3]:7.2f} {row[3] / row[2]:6.2f}   fwd+bwd ratio {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
