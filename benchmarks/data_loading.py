"""How fast the data layer is: loading MNIST, and augmentation throughput vs. training throughput.

Run from the project root::

    CNNLAB_DATA=../shared/datasets PYTHONPATH=src python benchmarks/data_loading.py [--repeats 5]

Prints figures only (no assertions on time):

1. time to load MNIST (60,000 + 10,000 images) from the ``.gz`` files into float32 arrays, median of a
   few runs, both *cold* (the SHA-256 of every payload is computed) and *warm* (files already verified:
   the record is reused, as on every load after the first);
2. augmentation throughput in images/s for batches of 128: affine only, affine + elastic, and the whole
   ``Batches`` pipeline (gather, ÷255, augment);
3. for comparison, the training throughput of ``lenet5`` on the same batches (forward + backward + SGD
   step), so one can see whether augmentation could be what limits an epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cnnlab.data import Augmentation, Batches, load_dataset, verify  # noqa: E402
from cnnlab.data.normalize import normalize as to_float  # noqa: E402
from cnnlab.data.paths import data_root  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_mnist_float(cold: bool):
    if cold:
        verify._memo.clear()  # and the stamp file lives in a fresh temporary cache (see main)
        verify_stamp = verify._stamp_file()
        verify_stamp.unlink(missing_ok=True)
    train = load_dataset("mnist", "train", download=False)
    test = load_dataset("mnist", "test", download=False)
    return to_float(train.images), to_float(test.images)


def images_per_second(fn, n_images: int, repeats: int) -> float:
    return n_images / median_time(fn, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="batches per throughput measurement")
    args = parser.parse_args()

    import os

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cnnlab-bench-")  # keep stamps out of ~/.cache
    print(f"data folder: {data_root()}")
    cold = median_time(lambda: load_mnist_float(cold=True), args.repeats)
    warm = median_time(lambda: load_mnist_float(cold=False), args.repeats)
    x_train, x_test = load_mnist_float(cold=False)
    print(f"MNIST 70,000 images .gz -> float32 {x_train.shape}+{x_test.shape}, median of {args.repeats}:")
    print(f"  cold (SHA-256 of every payload): {cold:.3f} s")
    print(f"  warm (already verified):         {warm:.3f} s")

    train = load_dataset("mnist", "train", download=False)
    bs, nb = args.batch_size, args.batches
    n = bs * nb
    sample = to_float(train.images[:n])
    rng = np.random.default_rng(0)
    affine = Augmentation(rotation=15, shift=2, scale=0.1)
    elastic = Augmentation(rotation=15, shift=2, scale=0.1, elastic_alpha=34, elastic_sigma=4)

    def run_aug(aug):
        for i in range(nb):
            aug(sample[i * bs:(i + 1) * bs], rng)

    def run_pipeline(aug):
        batches = Batches(train, bs, seed=0, augment=aug)
        for i, _ in zip(range(nb), batches):
            pass

    print(f"augmentation throughput (batches of {bs}, {n} images, median of {args.repeats}):")
    rates = {}
    for label, fn in [
        ("affine (rotate/shift/scale)", lambda: run_aug(affine)),
        ("affine + elastic (Simard)", lambda: run_aug(elastic)),
        ("Batches pipeline, no augmentation", lambda: run_pipeline(None)),
        ("Batches pipeline + affine + elastic", lambda: run_pipeline(elastic)),
    ]:
        rates[label] = images_per_second(fn, n, args.repeats)
        print(f"  {label:<38} {rates[label]:>10,.0f} images/s")

    try:
        from cnnlab.training.presets import build
        from cnnlab.engine.losses import SoftmaxCrossEntropy
        from cnnlab.engine.optim import SGD

        model = build("lenet5", (1, 28, 28), 10, seed=0)
        loss, opt = SoftmaxCrossEntropy(), SGD(0.1)
        labels = train.labels[:n]
        steps = min(nb, 8)

        def run_train():
            for i in range(steps):
                model.train_step(sample[i * bs:(i + 1) * bs], labels[i * bs:(i + 1) * bs], loss, opt)

        train_rate = images_per_second(run_train, bs * steps, max(1, args.repeats // 2))
        print(f"  {'lenet5 training step (for comparison)':<38} {train_rate:>10,.0f} images/s")
        ratio = rates["affine + elastic (Simard)"] / train_rate
        print(f"augmentation (affine + elastic) is {ratio:.1f}x the lenet5 training rate"
              f" -> it adds {100 / ratio:.0f}% to an epoch's time if run in the same thread")
    except Exception as exc:  # the engine may not be there yet; the data figures stand alone
        print(f"  lenet5 training throughput not measured: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
