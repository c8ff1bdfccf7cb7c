"""Training speed, cnnlab against PyTorch, side by side in one run.

For each architecture both libraries train the same network (same initial weights, same batches, same
optimizer, same thread count) over the same slice of MNIST. Both first train a few untimed warm-up
batches (PyTorch's first batches are several times slower than its steady state, and a benchmark that
times them says "2.1x faster" when the truth is 0.6x). Then the two libraries alternate every 10
batches, so that the drifting load of a shared machine hits both alike; we report the median images/s
over those rounds and the median of the rounds' ratios cnnlab/PyTorch (> 1 means cnnlab is faster).
Also reported, per architecture: single-image latency, batch inference images/s over the 10,000 test
images, and the memory one training epoch adds (peak resident memory during the epoch minus the
resident memory before it, each library alone in a fresh subprocess). Every result carries the CPU
model and the BLAS library, kernel and thread count: the ratio depends on the CPU.

    python benchmarks/vs_torch.py                 # lenet5 vgg-mini keras-mnist cnn-bn, 10,000 images, 3 epochs
    python benchmarks/vs_torch.py --quick         # 3,000 images, 3 epochs, no memory subprocesses
    python benchmarks/vs_torch.py --json          # machine-readable
    python benchmarks/vs_torch.py --profile lenet5   # where cnnlab's time goes, per layer

cnnlab's training step splits each batch over the threads (``cnnlab.data_parallel``); ``--profile`` times the
layers of the plain serial step on one whole batch.

Real MNIST is used when ``CNNLAB_DATA`` (or the cache) has it, random images otherwise (speed is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import statistics
import sys
import time

import numpy as np


def load_images(n: int):
    """First ``n`` MNIST training images as float32 (N, 1, 28, 28) and labels; random data if absent."""
    try:
        from cnnlab.data import load_dataset

        data = load_dataset("mnist", split="train")
        return data.images[:n].astype(np.float32) / 255.0, data.labels[:n].astype(np.int64), "MNIST"
    except Exception:
        rng = np.random.default_rng(0)
        return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n), "random"


def load_test_images():
    """The 10,000 MNIST test images as float32 (N, 1, 28, 28); random data of that size if absent."""
    try:
        from cnnlab.data import load_dataset

        return load_dataset("mnist", split="test").images.astype(np.float32) / 255.0
    except Exception:
        return np.random.default_rng(1).random((10_000, 1, 28, 28), dtype=np.float32)


def make_optimizers(name, lr, torch_params):
    import torch

    from cnnlab.engine.optim import SGD, Adam

    if name == "adam":
        return Adam(lr=lr), torch.optim.Adam(torch_params, lr=lr)
    return SGD(lr=lr, momentum=0.9), torch.optim.SGD(torch_params, lr=lr, momentum=0.9)


def cnnlab_epoch(model, opt, loss, x, y, batch):
    for i in range(0, len(x), batch):
        model.train_step(x[i:i + batch], y[i:i + batch], loss, opt)


def torch_epoch(net, opt, x, y, batch):
    import torch

    lossf = torch.nn.CrossEntropyLoss()
    for i in range(0, len(x), batch):
        opt.zero_grad(set_to_none=True)
        lossf(net(x[i:i + batch]), y[i:i + batch]).backward()
        opt.step()


#: Untimed training batches before the timed epochs, for each library.
WARMUP_BATCHES = 10

#: Batches per timed round; the two libraries alternate round by round.
ROUND_BATCHES = 10


def inference_rates(model, net, test_x, batch=256, repeats=3):
    """Batch inference images/s over ``test_x`` for cnnlab and torch (median of ``repeats`` passes)."""
    import torch

    tx = torch.from_numpy(test_x)
    net.eval()
    ours, theirs = [], []
    model.predict_proba(test_x[:batch])
    with torch.inference_mode():
        net(tx[:batch])
        for _ in range(repeats):
            t = time.perf_counter()
            model.predict_proba(test_x, batch_size=batch)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            for i in range(0, len(tx), batch):
                net(tx[i:i + batch])
            theirs.append(time.perf_counter() - t)
    net.train()
    return len(test_x) / statistics.median(ours), len(test_x) / statistics.median(theirs)


def machine_info(threads: int) -> dict:
    """CPU model, core count and the BLAS NumPy runs on (library, version, kernel, threads)."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = {}
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas":
                blas = {"blas": info.get("internal_api"), "blas_version": info.get("version"),
                        "blas_kernel": info.get("architecture"), "blas_threads_default": info.get("num_threads")}
                break
    except ImportError:
        pass
    import torch

    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": threads, **blas, "numpy": np.__version__,
            "torch": torch.__version__, "python": platform.python_version()}


def peak_memory_mb(library: str, arch: str, images: int, batch: int, threads: int) -> float:
    """Peak RSS (MB) that one training epoch adds, ``library`` alone in a fresh Python process."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", library, arch, str(images), str(batch),
                          str(threads)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``: resident now; ``VmHWM``: peak resident)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _start_peak() -> int:
    """Reset the peak-RSS mark to the current RSS (Linux: ``5`` into ``clear_refs``); return the RSS in KiB.

    Without the reset the peak of loading the dataset (larger than a training epoch's growth) would
    hide what training itself adds."""
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kb("VmRSS")


class _WorkerMemory:
    """Samples the private memory (``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``) of a
    training step's worker processes in a background thread; ``peak_kb`` is the largest sum seen."""

    def __init__(self, stepper, period: float = 0.005):
        import threading

        self.stepper, self.period, self.peak_kb = stepper, period, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _private_kb(self, pid: int) -> int:
        total = 0
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    if line.startswith(("Private_Clean:", "Private_Dirty:")):
                        total += int(line.split()[1])
        except OSError:
            pass
        return total

    def _run(self) -> None:
        while not self._done.wait(self.period):
            pids = getattr(self.stepper, "worker_pids", [])  # thread shards and the serial model have none
            self.peak_kb = max(self.peak_kb, sum(self._private_kb(pid) for pid in pids))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def memory_child(library: str, arch: str, images: int, batch: int, threads: int) -> None:
    """Body of the memory subprocess: build, load, reset the peak RSS, train one epoch, print the growth."""
    x, y, _ = load_images(images)
    from cnnlab.training.presets import build
    from cnnlab.data_parallel import training_step
    from cnnlab.engine.losses import get_loss

    model = build(arch, seed=0)
    if library == "torch":
        import torch

        from cnnlab.interop.torch_bridge import to_torch

        torch.set_num_threads(threads)
        net = to_torch(model)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        before = _start_peak()
        torch_epoch(net, opt, tx, ty, batch)
    else:
        from cnnlab.engine.optim import Adam

        before = _start_peak()
        stepper = training_step(model, threads)
        sampler = _WorkerMemory(stepper)
        cnnlab_epoch(stepper, Adam(lr=1e-3), get_loss("crossentropy"), x, y, batch)
        sampler.stop()
        # Worker processes (cnnlab.process_parallel) share this process's pages; what each one adds is its
        # private memory, sampled every 5 ms during the epoch (the peak of the sum is reported).
        print(round((_status_kb("VmHWM") - before + sampler.peak_kb) / 1024, 1))
        return
    print(round((_status_kb("VmHWM") - before) / 1024, 1))


def latency(fn, repeats=300):
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench_arch(arch, x, y, test_x, batch, optimizer, lr, epochs, threads):
    import torch

    from cnnlab.training.presets import build
    from cnnlab.data_parallel import DataParallel, training_step
    from cnnlab.engine.losses import get_loss
    from cnnlab.interop.torch_bridge import to_torch

    built = build(arch, seed=0)
    model = training_step(built, threads)  # as `cnnlab train` trains: shards per step when it pays
    net = to_torch(built)
    net.train()
    ours_opt, theirs_opt = make_optimizers(optimizer, lr, net.parameters())
    loss = get_loss("crossentropy")
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    warm = min(len(x), WARMUP_BATCHES * batch)  # untimed: first-call costs of both libraries
    cnnlab_epoch(model, ours_opt, loss, x[:warm], y[:warm], batch)
    torch_epoch(net, theirs_opt, tx[:warm], ty[:warm], batch)
    # Alternate in short rounds (ROUND_BATCHES batches of one library, then of the other), so that the
    # load of a shared machine, which drifts over seconds, hits both alike; the ratio is the median of
    # the rounds' ratios. Whole epochs alternated let one slow spell land on one library only.
    ours, theirs = [], []
    starts = [i for _ in range(epochs) for i in range(0, len(x), ROUND_BATCHES * batch)]
    for start in starts:
        stop = start + ROUND_BATCHES * batch
        t = time.perf_counter()
        cnnlab_epoch(model, ours_opt, loss, x[start:stop], y[start:stop], batch)
        ours.append((len(x[start:stop]), time.perf_counter() - t))
        t = time.perf_counter()
        torch_epoch(net, theirs_opt, tx[start:stop], ty[start:stop], batch)
        theirs.append((len(x[start:stop]), time.perf_counter() - t))

    one, tone = x[:1], tx[:1]
    net.eval()
    with torch.inference_mode():
        torch_ms = latency(lambda: net(tone))
    ours_ms = latency(lambda: built.predict_proba(one))
    ours_infer, theirs_infer = inference_rates(DataParallel(built, threads) if threads > 1 else built, net, test_x)
    n = len(x)
    ours_ips = statistics.median(count / seconds for count, seconds in ours)
    theirs_ips = statistics.median(count / seconds for count, seconds in theirs)
    ratio = statistics.median(t / o for (_, o), (_, t) in zip(ours, theirs))  # images equal in a pair
    return {
        "arch": arch,
        "batch_size": batch,
        "optimizer": optimizer,
        "images": n,
        "epochs": epochs,
        "cnnlab_images_per_s": round(ours_ips, 1),
        "torch_images_per_s": round(theirs_ips, 1),
        "ratio": round(ratio, 3),
        "rounds": len(ours),
        "cnnlab_epoch_s_60k": round(60_000 / ours_ips, 2),
        "torch_epoch_s_60k": round(60_000 / theirs_ips, 2),
        "cnnlab_latency_ms": round(ours_ms, 3),
        "torch_latency_ms": round(torch_ms, 3),
        "cnnlab_inference_images_per_s": round(ours_infer, 1),
        "torch_inference_images_per_s": round(theirs_infer, 1),
        "inference_images": len(test_x),
    }


def profile(arch, x, y, batch, steps=20):
    """Per-layer forward/backward time of a serial cnnlab training step (median over ``steps`` steps)."""
    from cnnlab.training.presets import build
    from cnnlab.bench.timing import profile_layers

    result = profile_layers(build(arch, seed=0), x[:batch], y[:batch], steps=steps, arch=arch)
    print(f"\nProfile of one serial cnnlab training step, batch {batch}")
    print(result.format())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["lenet5", "vgg-mini", "keras-mnist", "cnn-bn"])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--optimizer", choices=["adam", "momentum"], default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per library (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="3,000 images, 3 epochs, no memory subprocesses")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", metavar="ARCH", help="print cnnlab's per-layer time for ARCH and exit")
    args = parser.parse_args(argv)
    if args.memory_child:
        library, arch, images, batch, threads = args.memory_child
        memory_child(library, arch, int(images), int(batch), int(threads))
        return 0

    import torch

    torch.set_num_threads(args.threads)  # NumPy's BLAS uses every core by default: match it
    if args.quick:
        args.images, args.epochs, args.no_memory = 3_000, 3, True
    x, y, source = load_images(args.images)
    if args.profile:
        profile(args.profile, x, y, args.batch)
        return 0
    load_before = os.getloadavg()
    try:  # NumPy's BLAS gets the same thread count as torch (the sharded step lowers it to 1 per shard)
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    limits = threadpool_limits(args.threads, user_api="blas") if threadpool_limits else None
    test_x = load_test_images()
    results = [bench_arch(a, x, y, test_x, args.batch, args.optimizer, args.lr, args.epochs, args.threads)
               for a in args.arch]
    if limits is not None:
        limits.restore_original_limits()
    load = {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}
    machine = machine_info(args.threads)
    for r in results:  # other jobs on the machine skew both libraries: say how busy it was
        r["load_average_1_5_15min"] = load
        r["machine"] = machine
        if not args.no_memory:
            for library in ("cnnlab", "torch"):
                r[f"{library}_peak_train_mb"] = peak_memory_mb(library, r["arch"], args.images, args.batch,
                                                               args.threads)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"CPU {machine['cpu']} ({machine['cpus']} CPUs); BLAS {machine.get('blas')} {machine.get('blas_version')} "
          f"kernel {machine.get('blas_kernel')}; {args.threads} threads; torch {torch.__version__}, "
          f"numpy {np.__version__}")
    print(f"{source} slice of {args.images} images, batch {args.batch}, {args.optimizer}; "
          f"{WARMUP_BATCHES} warm-up batches, then {args.epochs} epochs alternating in rounds of "
          f"{ROUND_BATCHES} batches; medians over the rounds. Pairs read cnnlab / torch.")
    print(f"{'arch':<12}{'train img/s':>18}{'ratio':>7}{'epoch 60k (s)':>16}{'latency (ms)':>16}"
          f"{'infer img/s':>18}{'peak train MB':>16}")
    for r in results:
        memory = (f"{r['cnnlab_peak_train_mb']:>8.0f} /{r['torch_peak_train_mb']:>5.0f}"
                  if "cnnlab_peak_train_mb" in r else f"{'-':>16}")
        print(f"{r['arch']:<12}{r['cnnlab_images_per_s']:>9,.0f} /{r['torch_images_per_s']:>7,.0f}{r['ratio']:>7.2f}"
              f"{r['cnnlab_epoch_s_60k']:>8.1f} /{r['torch_epoch_s_60k']:>6.1f}"
              f"{r['cnnlab_latency_ms']:>9.2f} /{r['torch_latency_ms']:>5.2f}"
              f"{r['cnnlab_inference_images_per_s']:>9,.0f} /{r['torch_inference_images_per_s']:>7,.0f}{memory}")
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
