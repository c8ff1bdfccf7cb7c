"""Where a training step spends its time: per-layer forward/backward timing, and whole-epoch speed.

:func:`profile_layers` runs real training steps (forward with caches, loss gradient, backward, optimizer
update) and times each layer's ``forward`` and ``backward`` separately; the median over the steps is
robust to the odd slow step on a busy machine. Alongside the time it counts each layer's arithmetic,
so the table answers "which are faster, convolutional or dense layers?" two ways — share of the step,
and speed of the arithmetic (GFLOP/s): convolutions do most of the work, dense layers move more memory
per multiplication.

FLOPs counted (2 per multiply-add; ``N`` the batch)::

    Conv2D  forward  2·N·F·H'·W'·C·kh·kw      backward: the same for dW, and again for dX (not on layer 0)
    Dense   forward  2·N·n_in·n_out           backward: likewise
    others  0 (element-wise: their cost is memory traffic, not arithmetic)

:func:`epoch_speed` times whole training epochs (images per second) on one device.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..data_parallel import release, training_step
from ..engine.device import synchronize, to_device, to_device_array

#: Layer kinds grouped for the summary ("which are faster?").
KIND_CLASSES = {"Conv2D": "conv", "Dense": "dense", "MaxPool2D": "pooling", "AvgPool2D": "pooling",
                "BatchNorm": "normalization", "Dropout": "dropout", "Flatten": "reshape"}


def layer_class(kind: str) -> str:
    """``"Conv2D" -> "conv"``, ``"ReLU" -> "activation"`` (everything not listed is an activation)."""
    return KIND_CLASSES.get(kind, "activation")


@dataclass
class LayerTime:
    """Median times (ms) of one layer over the profiled steps, and what it computes."""

    name: str
    kind: str
    forward_ms: float
    backward_ms: float
    params: int
    forward_flops: int
    backward_flops: int

    @property
    def total_ms(self) -> float:
        return self.forward_ms + self.backward_ms

    @property
    def group(self) -> str:
        return layer_class(self.kind)


@dataclass
class Profile:
    """Result of :func:`profile_layers`: one :class:`LayerTime` per layer, plus the rest of the step."""

    arch: str
    batch: int
    steps: int
    device: str
    layers: list[LayerTime]
    other_ms: float  # loss gradient + optimizer update
    step_ms: float  # median of whole steps, timed end to end
    extra: dict = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        """Sum of the parts (layers + loss + optimizer); close to ``step_ms``, which includes the timers."""
        return sum(t.total_ms for t in self.layers) + self.other_ms

    def share(self, ms: float) -> float:
        return ms / self.total_ms if self.total_ms else 0.0

    def by_group(self) -> dict[str, dict]:
        """Totals per layer class: ``{"conv": {"ms", "share", "params", "flops", "gflops"}, ...}``."""
        groups: dict[str, dict] = {}
        for t in self.layers:
            g = groups.setdefault(t.group, {"layers": 0, "forward_ms": 0.0, "backward_ms": 0.0, "params": 0,
                                            "flops": 0})
            g["layers"] += 1
            g["forward_ms"] += t.forward_ms
            g["backward_ms"] += t.backward_ms
            g["params"] += t.params
            g["flops"] += t.forward_flops + t.backward_flops
        for g in groups.values():
            g["ms"] = g["forward_ms"] + g["backward_ms"]
            g["share"] = self.share(g["ms"])
            g["gflops"] = g["flops"] / (g["ms"] * 1e6) if g["flops"] and g["ms"] else None
            g["us_per_kparam"] = 1e3 * g["ms"] / (g["params"] / 1e3) if g["params"] else None
        return groups

    def to_dict(self) -> dict:
        return {"arch": self.arch, "batch": self.batch, "steps": self.steps, "device": self.device,
                "step_ms": self.step_ms, "other_ms": self.other_ms, "total_ms": self.total_ms,
                "layers": [{**vars(t), "share": self.share(t.total_ms)} for t in self.layers],
                "groups": self.by_group(), **self.extra}

    def format(self) -> str:
        """The per-layer table, then the per-class summary that answers "conv or dense: which is faster?"."""
        width = max([26] + [len(f"{t.name} ({t.kind})") + 2 for t in self.layers])
        lines = [f"{self.arch}: one training step, batch {self.batch}, {self.device} "
                 f"(median of {self.steps} steps, ms)",
                 f"{'layer':<{width}}{'forward':>9}{'backward':>10}{'share':>8}{'params':>10}{'GFLOP/s':>9}"]
        for t in self.layers:
            flops = t.forward_flops + t.backward_flops
            speed = f"{flops / (t.total_ms * 1e6):9.1f}" if flops and t.total_ms else f"{'-':>9}"
            lines.append(f"{t.name + ' (' + t.kind + ')':<{width}}{t.forward_ms:9.3f}{t.backward_ms:10.3f}"
                         f"{self.share(t.total_ms):8.1%}{t.params:>10,}{speed}")
        lines.append(f"{'loss gradient + optimizer':<{width}}{self.other_ms:19.3f}{self.share(self.other_ms):8.1%}")
        lines.append(f"{'sum of the parts':<{width}}{self.total_ms:19.3f}")
        lines.append(f"{'whole step (timed alone)':<{width}}{self.step_ms:19.3f}")
        lines.append("")
        lines.append(f"{'by class':<16}{'layers':>7}{'ms':>9}{'share':>8}{'params':>10}{'GFLOP/s':>9}"
                     f"{'µs/1k params':>14}")
        for name, g in sorted(self.by_group().items(), key=lambda kv: -kv[1]["ms"]):
            speed = f"{g['gflops']:9.1f}" if g["gflops"] else f"{'-':>9}"
            per_param = f"{g['us_per_kparam']:14.2f}" if g["us_per_kparam"] else f"{'-':>14}"
            lines.append(f"{name:<16}{g['layers']:>7}{g['ms']:9.3f}{g['share']:8.1%}{g['params']:>10,}{speed}"
                         f"{per_param}")
        return "\n".join(lines)


def _median_ms(values) -> float:
    return statistics.median(values) * 1e3 if values else 0.0


def profile_layers(model, x, y, loss="crossentropy", optimizer=None, steps: int = 20, warmup: int = 2,
                   device: str = "cpu", arch: str | None = None) -> Profile:
    """Time each layer's forward and backward pass during real training steps (see the module doc).

    ``x`` is one batch ``(N, *input_shape)`` (float32) with labels ``y`` ``(N,)``, reused for every step
    (the values do not change the time). ``warmup`` untimed steps come first (they allocate the work
    buffers). Each iteration also runs one ``model.train_step`` timed end to end without the per-layer
    timers, so the table shows what the timers themselves cost. The model (and the optimizer state) must
    already be on ``device``; the batch is moved there.
    """
    from ..engine.losses import get_loss
    from ..engine.optim import Adam

    loss = get_loss(loss)
    optimizer = optimizer if optimizer is not None else Adam()
    xb, yb = to_device_array(x, device), to_device_array(np.asarray(y), device)
    stop = model.fused_stop(loss)
    layers = model.layers[:stop]
    forward = [[] for _ in layers]
    backward = [[] for _ in layers]
    other, whole = [], []

    def clock() -> float:
        synchronize(device)
        return time.perf_counter()

    for s in range(warmup + steps):
        t = clock()
        model.train_step(xb, yb, loss, optimizer)
        step_time = clock() - t

        out, f_times = model.prepare_input(xb), []
        for layer in layers:
            t = clock()
            out = layer.forward(out, training=True)
            f_times.append(clock() - t)
        t = clock()
        grad = loss.value_and_grad(out, yb, from_logits=stop is not None)[1].astype(model.dtype, copy=False)
        rest = clock() - t
        b_times = [0.0] * len(layers)
        for i in reversed(range(len(layers))):
            t = clock()
            grad = layers[i].backward(grad)
            b_times[i] = clock() - t
        t = clock()
        optimizer.step(model.parameters_and_grads())
        rest += clock() - t

        if s >= warmup:
            whole.append(step_time)
            other.append(rest)
            for i in range(len(layers)):
                forward[i].append(f_times[i])
                backward[i].append(b_times[i])
    batch = len(x)
    rows = [LayerTime(layer.name, layer.kind, _median_ms(forward[i]), _median_ms(backward[i]), layer.n_params,
                      layer.forward_flops(batch), layer.backward_flops(batch))
            for i, layer in enumerate(layers)]
    return Profile(arch or model.name, batch, steps, device, rows, _median_ms(other), _median_ms(whole))


# -- whole epochs ----------------------------------------------------------------------------------------
@dataclass
class EpochSpeed:
    """Training speed of one architecture on one device: seconds per timed epoch, images per second."""

    arch: str
    device: str
    images: int
    batch: int
    seconds: list[float]

    @property
    def epoch_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.images / self.epoch_s if self.epoch_s else math.inf

    def to_dict(self) -> dict:
        return {"arch": self.arch, "device": self.device, "images": self.images, "batch": self.batch,
                "epochs": len(self.seconds), "epoch_s": self.epoch_s, "images_per_s": self.images_per_s,
                "epoch_s_60k": 60_000 / self.images_per_s}


def epoch_speed(model, x, y, device: str = "cpu", batch: int = 100, loss="crossentropy", optimizer=None,
                epochs: int = 1, warmup_batches: int = 3, threads: int | None = None) -> EpochSpeed:
    """Time ``epochs`` passes of mini-batch training over ``x`` ``(M, *input_shape)`` on ``device``.

    The model is moved to ``device`` (in place), and so is the whole float32 data set, once: a GPU
    training loop keeps its data on the device, and copying each batch would time the PCIe bus instead
    of the network. Batches are taken in order (shuffling does not change the speed). A few untimed
    batches first let the work buffers be allocated. The same loop runs on both devices, so their
    ratio compares the backends and nothing else.
    """
    from ..engine.losses import get_loss
    from ..engine.optim import Adam

    if len(x) < 1 or epochs < 1 or batch < 1:
        from ..engine.errors import ConfigError

        raise ConfigError(f"epoch_speed needs images, epochs and batch >= 1, received {len(x)}, {epochs}, {batch}")
    loss = get_loss(loss)
    optimizer = optimizer if optimizer is not None else Adam()
    to_device(model, device, optimizer)
    xd, yd = to_device_array(np.asarray(x, dtype=model.dtype), device), to_device_array(np.asarray(y), device)
    stepper = training_step(model, threads) if device == "cpu" else model  # as fit() trains
    for i in range(min(warmup_batches, -(-len(x) // batch))):  # ceil
        stepper.train_step(xd[i * batch:(i + 1) * batch], yd[i * batch:(i + 1) * batch], loss, optimizer)
    seconds = []
    for _ in range(epochs):
        synchronize(device)
        t = time.perf_counter()
        for start in range(0, len(x), batch):
            stepper.train_step(xd[start:start + batch], yd[start:start + batch], loss, optimizer)
        synchronize(device)
        seconds.append(time.perf_counter() - t)
    release(stepper)
    return EpochSpeed(getattr(model, "name", "model"), device, len(x), batch, seconds)


def benchmark_images(n: int, dataset: str = "mnist", data_dir=None):
    """The first ``n`` training images of ``dataset`` as float32 in [0, 1] ``(n, C, H, W)``, labels, and
    where they came from; random images of MNIST's shape when a known dataset is not on this machine
    (the time per image does not depend on the pixels). An unknown name or an unreadable file is an
    error: timing noise instead of a typo'd dataset would be a quiet lie."""
    from ..data import load_dataset
    from ..data.loading import locate
    from ..data.normalize import normalize
    from ..data.registry import FOLDER_PREFIX, get_spec

    if not dataset.startswith(FOLDER_PREFIX) and locate(get_spec(dataset), "train", data_dir) is None:
        rng = np.random.default_rng(0)
        return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n), "random"
    data = load_dataset(dataset, "train", data_dir, download=False, progress=False)
    return normalize(data.images[:n]), data.labels[:n].astype(np.int64), dataset
