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
      run.lock               only while a process trains the run: its PID (a second training is refused)

The checkpoint (:mod:`cnnlab.training.checkpoint`) and every other file are written atomically, and
nothing is pickled: opening a run folder executes no code. What a config turns into (data, model,
optimizer) is in :mod:`cnnlab.training.recipes`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from pathlib import Path


from .. import atomic
from ..engine.backend import get_xp
from ..engine.errors import ConfigError, NumericalError
from .callbacks import Callback, DivergenceGuard
from .checkpoint import jsonable, load_checkpoint, save_checkpoint
from .lock import RunLock
from .recipes import (build_augmentation, build_model, build_optimizer, build_schedule, load_data,
                      preprocessing_for)

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
        atomic.write_text(self.config, json.dumps(jsonable(data), indent=2) + "\n")

    def read_config(self) -> dict:
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.config}: cannot read the run's config ({exc})") from None

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite ``metrics.csv`` and ``metrics.json`` with one row per epoch (missing values empty/null)."""
        rows = [jsonable({c: row.get(c) for c in METRIC_COLUMNS}) for row in rows]
        atomic.write_text(self.metrics_json, json.dumps(rows, indent=2) + "\n")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        atomic.write_text(self.metrics_csv, buffer.getvalue())


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
        save_checkpoint(self.run.checkpoint, state.model, state.optimizer, epoch=epoch,
                        history=state.history.rows, extra={"start_cost": state.history.start_cost})

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
            done = state.history.epochs_done
            self.echo(f"training stopped: {state.error}")
            self.echo(f"the checkpoint of epoch {done}{' (the untrained weights)' if not done else ''}, before the "
                      f"divergence, is kept in {self.run.checkpoint}; continue from it with a lower learning rate: "
                      f"`cnnlab train --resume {self.run.path} --lr LR`")
            self._curves(state)
            return
        self._save_model(state, self.run.model, epoch=state.history.epochs_done, stop_reason=reason)
        self._curves(state)
        if reason == "interrupted":
            self.echo(f"interrupted during epoch {state.epoch}: current weights saved to {self.run.model}; "
                      f"checkpoint of epoch {state.history.epochs_done} kept; continue with "
                      f"`cnnlab train --resume {self.run.path}`")


#: What ``--resume`` may change: train longer, on another device, with other display options, and the
#: learning rate (to rescue a diverged run; the change is recorded in config.json and summary.json).
RESUME_OPTIONS = ("epochs", "progress", "test", "device", "lr")


def train_run(config, resume: str | os.PathLike | None = None, echo=print, callbacks=(), step_with=None):
    """Train as ``cnnlab train`` does (see :func:`_train_run`), holding the run folder's lock
    (:class:`~cnnlab.training.lock.RunLock`) while training: a second training of the same run is refused.
    ``step_with``: passed to :func:`~cnnlab.training.loop.fit` (another engine's step, for peer runs)."""
    with contextlib.ExitStack() as locks:
        return _train_run(config, resume, echo, callbacks, locks, step_with)


def _train_run(config, resume, echo, callbacks, locks: contextlib.ExitStack, step_with=None):
    """Train as ``cnnlab train`` does: a new run folder for ``config``, or continue the run ``resume``.

    Returns ``(run_folder, history, model)``. With ``resume``, ``config`` may only change ``epochs`` (to
    train longer), ``lr`` and the display options; everything else comes from the run's own ``config.json``.
    A learning-rate change is kept in the run's record: ``config.json`` lists it under ``changes``, and
    ``summary.json`` says "learning rate changed from A to B at epoch k".

    A diverged run raises the :class:`~cnnlab.engine.errors.NumericalError` of :func:`fit` after writing
    ``summary.json`` (``stop_reason: "diverged"``); the error carries ``run`` and ``history``.
    """
    from .config import TrainConfig, resolved
    from ..engine.losses import get_loss
    from .callbacks import History
    from .loop import evaluate, fit

    changes: list[dict] = []  # options changed on resume, over the run's whole life (config.json)
    if resume is not None:
        run = RunFolder.open(resume)
        locks.enter_context(RunLock(run.path, echo))  # before reading anything another process may rewrite
        record = run.read_config()
        saved = TrainConfig.from_dict(record["config"], str(run.config))
        given = {} if config is None else {k: getattr(config, k, None) for k in RESUME_OPTIONS}
        config = saved.replace(**given)
        changes = list(record.get("changes", []))
    try:
        get_xp(config.device)  # CuPy and a GPU present, for --device gpu (before loading any data)
    except ConfigError as exc:
        raise ConfigError(f"{exc}" + (" (or resume it on the CPU: --device cpu)" if resume else "")) from None
    train, val, class_names = load_data(config, echo)
    if train.mode is not None and config.folder_mode == "auto":
        # an image folder read in the mode its majority chose: the test split, a resume and the run's
        # record use that mode, whatever pictures are added later
        config = config.replace(folder_mode=train.mode)
    # Everything that can still refuse an option is built before the run folder exists, so a bad
    # option leaves nothing behind.
    model = build_model(config, train.sample_shape, len(class_names))
    loss = get_loss(config.loss)
    optimizer, weight_decay = build_optimizer(config, len(train))
    schedule = build_schedule(config)
    augment = build_augmentation(config)
    history, initial_epoch = History(), 0
    if resume is None:
        stem = f"{config.arch.replace(':', '-')}-{config.dataset.replace(':', '-').replace('/', '-')}"
        run = RunFolder.create(config.out, config.name, stem=stem)
        locks.enter_context(RunLock(run.path, echo))  # a --resume of it while it trains is refused
    else:
        meta = load_checkpoint(run.checkpoint, model, optimizer)
        initial_epoch = meta["epoch"]
        history.rows = meta["history"]
        history.start_cost = meta.get("extra", {}).get("start_cost")
        # --epochs is the total, not "more": on a finished run, say so instead of doing nothing (a run stopped
        # after its last checkpoint but before its summary still resumes, to finish its model and summary)
        if config.epochs <= initial_epoch and (run.path / "summary.json").is_file():
            raise ConfigError(f"{run.path} has already trained {initial_epoch} epochs and --epochs is the total "
                              f"({config.epochs}): give --epochs {initial_epoch + 1} or more to train on")
        echo(f"resuming {run.path} after epoch {initial_epoch} of {config.epochs}")
        if config.learning_rate != saved.learning_rate:
            changes.append({"epoch": initial_epoch + 1, "option": "lr", "from": saved.learning_rate,
                            "to": config.learning_rate,
                            "note": f"learning rate changed from {saved.learning_rate:g} to "
                                    f"{config.learning_rate:g} at epoch {initial_epoch + 1}"})
            echo(changes[-1]["note"])
        elif _read_summary(run).get("stop_reason") == "diverged":
            echo(f"note: this run diverged with learning rate {config.learning_rate:g}; resuming with the same "
                 f"rate will most likely diverge again (give --lr)")
    run.write_config({**resolved(config, weight_decay=weight_decay, n_train=len(train),
                                 n_val=len(val) if val is not None else 0, run=str(run.path)),
                      **({"changes": changes} if changes else {})})
    echo(f"run folder: {run.path}")
    preprocessing = preprocessing_for(config.dataset, train.sample_shape,
                                      standardize_with=train.images if config.standardize else None,
                                      fat_strokes_seen=bool(augment and augment.thickness))
    recorder = RunRecorder(run, class_names, preprocessing,
                           {"run": run.path.name, "dataset": config.dataset, "config": config.to_dict()}, echo)
    start = time.perf_counter()

    def summary_of(history, **more) -> dict:
        summary = {"stop_reason": history.stop_reason, "epochs_done": history.epochs_done,
                   "seconds": round(time.perf_counter() - start, 3), **more}
        if history.best is not None:
            summary.update(best_epoch=history.best["epoch"], best_val_accuracy=history.best["val_accuracy"])
        if changes:
            summary["changes"] = [change["note"] for change in changes]
        return summary

    try:
        history = fit(model, train, val, epochs=config.epochs, batch_size=config.batch_size, loss=loss,
                      optimizer=optimizer, schedule=schedule, augment=augment,
                      preprocessing=preprocessing, monitors=config.monitors, full_train_eval=config.full_train_eval,
                      seed=config.seed, callbacks=[recorder, *callbacks], progress=config.progress,
                      early_stop=config.early_stop, initial_epoch=initial_epoch, history=history,
                      divergence=True if config.stop_when_stuck else DivergenceGuard(stall=False),
                      device=config.device, step_with=step_with)
    except NumericalError as exc:  # divergence is a result: the run's record says so, then the caller decides
        atomic.write_text(run.path / "summary.json",
                          json.dumps(jsonable(summary_of(exc.history, error=str(exc))), indent=2) + "\n")
        exc.run = run
        raise
    summary = summary_of(history)
    if config.test and history.stop_reason != "interrupted":
        from ..data.loading import load_dataset

        test = load_dataset(config.dataset, "test", config.data_dir, progress=config.progress, mode=config.folder_mode)
        result = evaluate(model, test,
                          preprocessing=preprocessing, device=config.device)
        summary["test_accuracy"] = result.accuracy
        echo(f"test accuracy: {result.accuracy:.2%} on {result.n:,} images")
    atomic.write_text(run.path / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    return run, history, model


def _read_summary(run: RunFolder) -> dict:
    """The run's summary.json, or {} when it has none (yet) or it cannot be read."""
    try:
        return json.loads((run.path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
