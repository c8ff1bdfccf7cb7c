"""The run folder: everything one training run leaves behind, in one place, written atomically.

::

    runs/lenet5-mnist-20240501-120000/
      config.json            every option, resolved (weight decay, learning rate), versions, seed
      metrics.csv            one row per epoch: epoch, train/val cost and accuracy, lr, seconds
      metrics.json           the same rows as JSON
      model.safetensors      the final weights (a model file: cnnlab.io.load_model reads it)
      best.safetensors       the weights of the epoch with the best validation accuracy
      checkpoint.safetensors weights + optimizer state + epoch + random generator states (see below)
      curves.png             cost and accuracy, training vs validation
      summary.json           how it ended: stop reason, epochs, best validation and test accuracy, time

The checkpoint is one safetensors file — arrays under ``model/<name>`` and ``optim/<param>/<key>``, and
the rest (epoch, history, optimizer scalars, the bit-generator states of the shuffling generator and
of the model's dropout layers) as JSON in its metadata. One file, so one atomic rename: a checkpoint is
either the previous one or the complete new one, never a mix. No pickle anywhere: opening a run folder
executes no code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .. import atomic
from ..engine.backend import get_xp, to_numpy
from ..engine.errors import CnnlabError, ConfigError
from .callbacks import Callback

CHECKPOINT_VERSION = 1
METRIC_COLUMNS = ("epoch", "train_cost", "train_accuracy", "val_cost", "val_accuracy", "lr", "seconds")


class RunFolder:
    """Paths of one run folder, and the functions that write and read its files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- creation -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, out: str | os.PathLike, name: str | None = None, stem: str = "run") -> "RunFolder":
        """A new, empty run folder in ``out``: ``name`` if given, else ``<stem>-<YYYYmmdd-HHMMSS>``.

        An existing folder is never reused: a suffix ``-2``, ``-3``, ... is added instead.
        """
        out = Path(out)
        from .config import check_run_name

        check_run_name(name)
        base = name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        for attempt in range(1, 1000):
            path = out / (base if attempt == 1 else f"{base}-{attempt}")
            try:
                path.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            return cls(path)
        raise ConfigError(f"cannot create a run folder named {base!r} in {out}: too many runs with that name")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        """An existing run folder (for ``--resume``); it must hold a checkpoint and its config."""
        run = cls(path)
        if not run.path.is_dir():
            raise ConfigError(f"run folder not found: {run.path}")
        for needed in (run.checkpoint, run.config):
            if not needed.is_file():
                raise ConfigError(f"{run.path} is not a resumable run folder: {needed.name} is missing")
        return run

    # -- paths --------------------------------------------------------------------------------------
    config = property(lambda self: self.path / "config.json")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    metrics_json = property(lambda self: self.path / "metrics.json")
    model = property(lambda self: self.path / "model.safetensors")
    best = property(lambda self: self.path / "best.safetensors")
    checkpoint = property(lambda self: self.path / "checkpoint.safetensors")
    curves = property(lambda self: self.path / "curves.png")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- small files --------------------------------------------------------------------------------
    def write_config(self, data: dict) -> None:
        atomic.write_text(self.config, json.dumps(_jsonable(data), indent=2) + "\n")

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.config}: cannot read the run's config ({exc})") from None

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite ``metrics.csv`` and ``metrics.json`` with one row per epoch (missing values empty/null)."""
        rows = [_jsonable({c: row.get(c) for c in METRIC_COLUMNS}) for row in rows]
        atomic.write_text(self.metrics_json, json.dumps(rows, indent=2) + "\n")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        atomic.write_text(self.metrics_csv, buffer.getvalue())

    def read_metrics(self) -> list[dict]:
        if not self.metrics_json.is_file():
            return []
        return json.loads(self.metrics_json.read_text(encoding="utf-8"))


# -- checkpoints --------------------------------------------------------------------------------------
def rng_state(rng: np.random.Generator) -> dict:
    """The bit generator's state: a small JSON-able dict (PCG64: two 128-bit integers)."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def model_rng_states(model) -> dict:
    """States of the generators the model's layers draw from (dropout masks), by layer index."""
    return {str(i): rng_state(layer.rng) for i, layer in enumerate(model.layers)
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def restore_model_rng_states(model, states: dict) -> None:
    for index, state in states.items():
        layer = model.layers[int(index)]
        if not isinstance(getattr(layer, "rng", None), np.random.Generator):
            raise ConfigError(f"checkpoint holds a random state for layer {index}, which has no generator")
        # Layers that share the model's generator get the same state several times: harmless.
        set_rng_state(layer.rng, state)


def save_checkpoint(path: str | os.PathLike, model, optimizer, *, epoch: int, rng: np.random.Generator,
                    history: list[dict], extra: dict | None = None) -> Path:
    """Write everything needed to continue training exactly after ``epoch`` (1-based, completed)."""
    from safetensors.numpy import save

    tensors = {f"model/{name}": np.ascontiguousarray(to_numpy(a)) for name, a in model.state_dict().items()}
    optim_scalars = {}
    for pname, slot in optimizer.state.items():
        for key, value in slot.items():
            if hasattr(value, "shape"):
                tensors[f"optim/{pname}/{key}"] = np.ascontiguousarray(to_numpy(value))
            else:
                optim_scalars.setdefault(pname, {})[key] = value
    meta = {
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "optimizer": {"type": type(optimizer).__name__, "config": optimizer.get_config(),
                      "scalars": optim_scalars},
        "rng": rng_state(rng),
        "model_rng": model_rng_states(model),
        "architecture": model.get_config(),
        "history": history,
        "extra": extra or {},
    }
    data = save(tensors, metadata={"cnnlab-checkpoint": json.dumps(_jsonable(meta))})
    atomic.write_bytes(path, data)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, model, optimizer, rng: np.random.Generator) -> dict:
    """Restore model weights, optimizer state, and generator states in place; returns the metadata."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = json.loads((fh.metadata() or {})["cnnlab-checkpoint"])
        tensors = load_file(str(path))
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable cnnlab checkpoint ({exc})") from None
    except Exception as exc:  # safetensors' own errors for a damaged file
        raise ConfigError(f"{path}: not a readable cnnlab checkpoint ({exc})") from None
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path}: checkpoint version {meta.get('version')!r}, expected {CHECKPOINT_VERSION}")
    try:
        model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    except CnnlabError as exc:
        raise ConfigError(f"{path}: the checkpoint does not fit the model ({exc})") from None
    if meta["optimizer"]["type"] != type(optimizer).__name__:
        raise ConfigError(f"{path}: checkpoint was written by optimizer {meta['optimizer']['type']}, "
                          f"resuming with {type(optimizer).__name__}")
    state: dict[str, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            pname, _, slot = key[len("optim/"):].rpartition("/")
            state.setdefault(pname, {})[slot] = value
    for pname, scalars in meta["optimizer"]["scalars"].items():
        state.setdefault(pname, {}).update(scalars)
    optimizer.state = state
    set_rng_state(rng, meta["rng"])
    restore_model_rng_states(model, meta.get("model_rng", {}))
    return meta


def _jsonable(value):
    """Copy of ``value`` that ``json.dumps`` writes as strict JSON: NaN/inf become ``None``, NumPy -> Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# -- a run from a config: data, model, optimizer, fit, files -------------------------------------------------
def load_data(config, echo=print):
    """``(train, val or None, class_names)`` for a config: the training split, the validation part held
    out of it (seeded), then the first ``train_subset`` images of what remains."""
    from ..data.loading import load_dataset
    from ..data.splits import first_n, train_val_split

    full = load_dataset(config.dataset, "train", config.data_dir, progress=config.progress)
    train, val = full, None
    if config.val_split:
        count = int(config.val_split) if config.val_split >= 1 else float(config.val_split)
        train, val = train_val_split(full, count, seed=config.seed)
    if config.train_subset:
        train = first_n(train, config.train_subset)
    echo(f"data: {config.dataset}, {len(train):,} training images"
         + (f", {len(val):,} validation images" if val is not None else ", no validation set"))
    return train, val, full.class_names


def preprocessing_for(dataset_name: str, sample_shape, standardize_with=None) -> dict:
    """The preprocessing description stored in the model file (what ``predict`` must do to a picture).

    Pixels are scaled to [0, 1]. With ``standardize_with`` (the uint8 training images ``(N, C, H, W)``)
    each channel is also shifted and scaled to mean 0 and standard deviation 1 over those images —
    measured on the training split only, so the validation and test sets stay unseen.
    """
    from ..data.normalize import MNIST_PREPROCESSING

    if dataset_name.lower() in ("mnist", "fashion-mnist"):
        pre = dict(MNIST_PREPROCESSING)
    else:
        c, h, w = sample_shape  # the same scaling (÷255), pictures taken as they are
        pre = {**MNIST_PREPROCESSING, "polarity": "as-is", "size": [h, w], "channels": c}
    if standardize_with is not None:  # statistics of pixels ÷ 255, the scale above
        from ..data import channel_stats

        mean, std = (np.round(v.astype(np.float64), 6).tolist() for v in channel_stats(standardize_with))
        std = [s if s > 0 else 1.0 for s in std]  # a constant channel: shifting is enough
        pre.update(mean=mean if len(mean) > 1 else mean[0], std=std if len(std) > 1 else std[0])
    return pre


def build_model(config, sample_shape, num_classes: int):
    """The model a config describes: a preset (``arch``) or an explicit ``layers`` list."""
    from .presets import build, parse_arch
    from ..engine.model import Sequential

    if config.layers:
        specs = []
        for i, spec in enumerate(config.layers):
            if not isinstance(spec, dict) or "type" not in spec:
                raise ConfigError(f"layers[{i}]: expected a table with a 'type' key, received {spec!r}")
            options = spec.get("config", {k: v for k, v in spec.items() if k not in ("type", "name")})
            specs.append({"type": spec["type"], "name": spec.get("name"), "config": options})
        return Sequential.from_config({"name": "custom", "input_shape": list(sample_shape), "layers": specs},
                                      seed=config.seed)
    options = config.arch_kwargs()
    if parse_arch(config.arch)[0] == "mlp" and "output" not in options:
        # The softmax cross-entropy needs softmax outputs; Nielsen's quadratic and binary
        # cross-entropy costs use sigmoid output units (the preset's default).
        options["output"] = "softmax" if config.loss.lower() in ("crossentropy", "softmax-crossentropy", "ce") \
            else "sigmoid"
    return build(config.arch, sample_shape, num_classes, seed=config.seed, **options)


def build_optimizer(config, n_train: int):
    """(optimizer, weight decay it uses) for a config; ``lambda`` becomes ``λ / n_train`` (classic L2).

    Without ``weight_decay`` or ``lambda`` the optimizer keeps its own default (0, and AdamW's 1e-2).
    """
    from ..engine.optim import classic_l2, get_optimizer

    kwargs = {"lr": config.learning_rate}
    if config.weight_decay is not None:
        kwargs["weight_decay"] = config.weight_decay
    if config.lmbda is not None:
        kwargs["weight_decay"] = classic_l2(config.lmbda, n_train)
    if config.optimizer.lower() in ("sgd", "momentum", "nesterov"):
        if config.momentum is not None:
            kwargs["momentum"] = config.momentum
        if config.nesterov:
            kwargs["nesterov"] = True
    elif config.momentum is not None or config.nesterov:
        raise ConfigError(f"momentum applies to the sgd, momentum and nesterov optimizers, not {config.optimizer!r}")
    optimizer = get_optimizer(config.optimizer, **kwargs)
    return optimizer, optimizer.weight_decay


def build_schedule(config):
    from ..engine.optim import get_schedule

    options = {"constant": {}, "step": {"step_size": config.step_size, "gamma": config.gamma},
               "cosine": {"total_epochs": config.epochs, "min_lr": config.min_lr}}
    if config.schedule not in options:
        raise ConfigError(f"unknown schedule {config.schedule!r}; expected one of: {', '.join(options)}")
    return get_schedule(config.schedule, config.learning_rate, **options[config.schedule])


def data_rng(seed: int) -> np.random.Generator:
    """The generator that shuffles and augments: its own stream, independent of the weights' one."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1]))


class RunRecorder(Callback):
    """Callback that keeps the run folder up to date (every file written atomically).

    Each epoch: metrics, checkpoint, ``best.safetensors`` when validation accuracy improved; the curves
    at most every ``curves_every`` seconds (drawing them takes about half a second, too much after
    every short epoch). At the end: ``model.safetensors`` and the curves — except after a divergence,
    where the last good checkpoint and best model are left as they were.
    """

    def __init__(self, run: RunFolder, class_names, preprocessing: dict, extra: dict, echo=print,
                 curves_every: float = 60.0):
        self.run = run
        self.curves_every = curves_every
        self._curves_at = time.monotonic()
        self.class_names = list(class_names)
        self.preprocessing = preprocessing
        self.extra = extra
        self.echo = echo

    def _save_model(self, state, path, **extra):
        from ..io import save_model

        save_model(state.model, path, class_names=self.class_names, preprocessing=self.preprocessing,
                   extra={**self.extra, **extra})

    def _checkpoint(self, state, epoch):
        save_checkpoint(self.run.checkpoint, state.model, state.optimizer, epoch=epoch, rng=state.rng,
                        history=state.history.rows)

    def _curves(self, state):
        from ..plots import curves_figure, save_figure

        if state.history.rows:
            save_figure(curves_figure(state.history, title=self.run.path.name), self.run.curves)
        self._curves_at = time.monotonic()

    def on_train_begin(self, state):
        if not self.run.checkpoint.is_file():  # so that even an interrupted first epoch can be resumed
            self._checkpoint(state, state.epoch)

    def on_epoch_end(self, state, row):
        self.run.write_metrics(state.history.rows)
        best = state.history.best
        if best is row:
            self._save_model(state, self.run.best, epoch=row["epoch"], val_accuracy=row["val_accuracy"])
        self._checkpoint(state, row["epoch"])
        if time.monotonic() - self._curves_at >= self.curves_every:
            self._curves(state)

    def on_train_end(self, state):
        reason = state.history.stop_reason
        if reason == "diverged":
            self.echo(f"training stopped: {state.error}")
            self.echo(f"the last good checkpoint (epoch {state.history.epochs_done}) is kept in {self.run.checkpoint}")
            self._curves(state)
            return
        self._save_model(state, self.run.model, epoch=state.history.epochs_done, stop_reason=reason)
        self._curves(state)
        if reason == "interrupted":
            self.echo(f"interrupted during epoch {state.epoch}: current weights saved to {self.run.model}; "
                      f"checkpoint of epoch {state.history.epochs_done} kept; continue with "
                      f"`cnnlab train --resume {self.run.path}`")


#: What ``--resume`` may change: train longer, on another device, with other display options.
RESUME_OPTIONS = ("epochs", "progress", "test", "device")


def train_run(config, resume: str | os.PathLike | None = None, echo=print, callbacks=()):
    """Train as ``cnnlab train`` does: a new run folder for ``config``, or continue the run ``resume``.

    Returns ``(run_folder, history, model)``. With ``resume``, ``config`` may only change ``epochs`` (to
    train longer) and the display options; everything else comes from the run's own ``config.json``.
    """
    from .config import TrainConfig, resolved
    from ..engine.losses import get_loss
    from .callbacks import History
    from .loop import evaluate, fit

    if resume is not None:
        run = RunFolder.open(resume)
        saved = TrainConfig.from_dict(run.read_config()["config"], str(run.config))
        changes = {} if config is None else {k: getattr(config, k) for k in RESUME_OPTIONS}
        config = saved.replace(**changes)
    try:
        get_xp(config.device)  # CuPy and a GPU present, for --device gpu (before loading any data)
    except ConfigError as exc:
        raise ConfigError(f"{exc}" + (" (or resume it on the CPU: --device cpu)" if resume else "")) from None
    train, val, class_names = load_data(config, echo)
    # Everything that can still refuse an option is built before the run folder exists, so a bad
    # option leaves nothing behind.
    model = build_model(config, train.sample_shape, len(class_names))
    loss = get_loss(config.loss)
    optimizer, weight_decay = build_optimizer(config, len(train))
    schedule = build_schedule(config)
    augment = None
    if config.augment:
        from ..data.augment import Augmentation

        try:
            augment = Augmentation(**config.augment_options)
        except TypeError as exc:  # an unknown option, or text where a number belongs
            raise ConfigError(f"augment_options: {exc}") from None
    rng = data_rng(config.seed)
    history, initial_epoch = History(), 0
    if resume is None:
        stem = f"{config.arch.replace(':', '-')}-{config.dataset.replace(':', '-').replace('/', '-')}"
        run = RunFolder.create(config.out, config.name, stem=stem)
    else:
        meta = load_checkpoint(run.checkpoint, model, optimizer, rng)
        initial_epoch = meta["epoch"]
        history.rows = meta["history"]
        # --epochs is the total, not "more": on a finished run, say so instead of doing nothing (a run stopped
        # after its last checkpoint but before its summary still resumes, to finish its model and summary)
        if config.epochs <= initial_epoch and (run.path / "summary.json").is_file():
            raise ConfigError(f"{run.path} has already trained {initial_epoch} epochs and --epochs is the total "
                              f"({config.epochs}): give --epochs {initial_epoch + 1} or more to train on")
        echo(f"resuming {run.path} after epoch {initial_epoch} of {config.epochs}")
    run.write_config(resolved(config, weight_decay=weight_decay, n_train=len(train),
                              n_val=len(val) if val is not None else 0, run=str(run.path)))
    echo(f"run folder: {run.path}")
    preprocessing = preprocessing_for(config.dataset, train.sample_shape,
                                      standardize_with=train.images if config.standardize else None)
    recorder = RunRecorder(run, class_names, preprocessing,
                           {"run": run.path.name, "dataset": config.dataset, "config": config.to_dict()}, echo)
    start = time.perf_counter()
    history = fit(model, train, val, epochs=config.epochs, batch_size=config.batch_size, loss=loss,
                  optimizer=optimizer, schedule=schedule, augment=augment,
                  preprocessing=preprocessing, monitors=config.monitors, full_train_eval=config.full_train_eval,
                  rng=rng, callbacks=[recorder, *callbacks], progress=config.progress,
                  early_stop=config.early_stop, initial_epoch=initial_epoch, history=history,
                  device=config.device)
    summary = {"stop_reason": history.stop_reason, "epochs_done": history.epochs_done,
               "seconds": round(time.perf_counter() - start, 3)}
    if history.best is not None:
        summary.update(best_epoch=history.best["epoch"], best_val_accuracy=history.best["val_accuracy"])
    if config.test and history.stop_reason != "interrupted":
        from ..data.loading import load_dataset

        result = evaluate(model, load_dataset(config.dataset, "test", config.data_dir, progress=config.progress),
                          preprocessing=preprocessing, device=config.device)
        summary["test_accuracy"] = result.accuracy
        echo(f"test accuracy: {result.accuracy:.2%} on {result.n:,} images")
    atomic.write_text(run.path / "summary.json", json.dumps(_jsonable(summary), indent=2) + "\n")
    return run, history, model
