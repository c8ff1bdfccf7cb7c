"""The course's Keras MNIST convnet, run by Keras itself (on its PyTorch backend) and by cnnlab, side by side.

    KERAS_BACKEND=torch python benchmarks/keras_recipe.py [--seeds 0 1 2] [--images 60000] [--epochs 10]

The recipe (the `keras-mnist` preset): conv 32@3x3 relu → maxpool → conv 64@3x3 relu → maxpool → flatten →
dropout 0.5 → dense 10 softmax; categorical cross-entropy, Adam (lr 1e-3), batch 1000, 10 epochs, the test set
as validation data — as the course runs it (it reports val_acc 0.9859–0.9860 at epochs 9–10). Keras 3 runs on
the pinned CPU PyTorch, so no TensorFlow is needed (`pip install keras`). Both libraries see the same uint8
images scaled to [0, 1]; each draws its own initial weights and batch order from the seed.

Prints, per library and seed, the validation accuracy after every epoch and the median seconds per epoch,
and writes them to ``docs/keras_recipe.json`` (``--out``), with the CPU model and BLAS kernel beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

REPORTED = {9: 0.9859, 10: 0.9860}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info

        info = next((i for i in threadpool_info() if i.get("user_api") == "blas"), {})
        return f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')}"
    except Exception:  # noqa: BLE001 - information only
        return "unknown"


def load(images: int, data_dir):
    from cnnlab.data import load_dataset

    train = load_dataset("mnist", "train", data_dir, download=False, progress=False)
    test = load_dataset("mnist", "test", data_dir, download=False, progress=False)
    return train.images[:images], train.labels[:images], test.images, test.labels


def run_keras(seed, x, y, tx, ty, epochs, batch):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    to_keras = lambda images: (images.astype("float32") / 255).transpose(0, 2, 3, 1)  # noqa: E731  NHWC
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    history = model.fit(to_keras(x), keras.utils.to_categorical(y, 10), batch_size=batch, epochs=epochs,
                        validation_data=(to_keras(tx), keras.utils.to_categorical(ty, 10)), verbose=0,
                        callbacks=[Clock()])
    return [round(float(a), 5) for a in history.history["val_accuracy"]], times


def run_cnnlab(seed, x, y, tx, ty, epochs, batch):
    from cnnlab.training.loop import fit
    from cnnlab.training.presets import build

    model = build("keras-mnist", seed=seed)
    history = fit(model, (x, y), (tx, ty), epochs=epochs, batch_size=batch, optimizer="adam", lr=1e-3,
                  seed=seed, progress=False, verbose=False)
    # an epoch's seconds include its validation pass, as Keras's do
    return [round(float(a), 5) for a in history["val_accuracy"]], list(history["seconds"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=60_000, help="training images (smoke runs: fewer)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--data-dir", default=os.environ.get("CNNLAB_DATA"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "keras_recipe.json")
    args = parser.parse_args(argv)
    import keras
    import torch

    x, y, tx, ty = load(args.images, args.data_dir)
    results = {"cpu": cpu_model(), "blas": blas_kernel(), "threads": torch.get_num_threads(),
               "keras": keras.__version__, "backend": keras.backend.backend(), "torch": torch.__version__,
               "images": len(x), "epochs": args.epochs, "batch": args.batch, "reported": REPORTED, "runs": []}
    for seed in args.seeds:
        for library, run in (("keras", run_keras), ("cnnlab", run_cnnlab)):
            curve, times = run(seed, x, y, tx, ty, args.epochs, args.batch)
            results["runs"].append({"library": library, "seed": seed, "val_accuracy": curve,
                                    "epoch_seconds": [round(t, 2) for t in times]})
            print(f"{library:<7} seed {seed}: val_acc {' '.join(f'{a:.4f}' for a in curve)}; "
                  f"median {statistics.median(times):.1f} s/epoch", flush=True)
    for library in ("keras", "cnnlab"):
        runs = [r for r in results["runs"] if r["library"] == library]
        last = [r["val_accuracy"][-1] for r in runs]
        spread = statistics.stdev(last) if len(last) > 1 else 0.0
        seconds = statistics.median(t for r in runs for t in r["epoch_seconds"])
        print(f"{library}: final val_acc {statistics.fmean(last):.4f} ± {spread:.4f} over {len(runs)} seed(s); "
              f"{seconds:.1f} s per epoch")
    print(f"machine: {results['cpu']}, BLAS {results['blas']}, torch threads {results['threads']}")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
