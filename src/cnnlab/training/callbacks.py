"""Callbacks: what :func:`cnnlab.training.loop.fit` calls around its loop, so the loop itself stays short.

``fit`` calls ``on_train_begin``, then per epoch ``on_epoch_begin``, ``on_batch_end`` after every batch
(only for callbacks that define it: the loop is hot for small networks), ``on_epoch_end`` (return True to
stop), and ``on_train_end`` — also after Ctrl-C or a divergence, so a callback can save what it keeps.
Built in: :class:`ProgressBar` (a tqdm bar per epoch), :class:`EpochLog` (one line per epoch) and
:class:`EarlyStopping`; :class:`cnnlab.training.runs.RunRecorder` keeps the run folder.
:class:`DivergenceGuard` is not a callback: ``fit`` asks it about each epoch *before* the callbacks see
it, so a diverged epoch is never checkpointed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


from ..engine.errors import ConfigError

#: What :func:`fit` can record after every epoch (each can be switched off).
MONITORS = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")


@dataclass
class History:
    """What happened, one row per epoch: ``epoch`` (1-based), ``train_cost``, ``train_accuracy``,
    ``val_cost``, ``val_accuracy`` (``None`` when switched off), ``lr``, ``seconds``.

    ``history["val_accuracy"]`` gives a column as a list; ``stop_reason`` is ``"completed"``,
    ``"early_stop"``, ``"interrupted"`` or ``"diverged"``.
    """

    rows: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    #: The loss of the untrained model (its first training batch, before the first update): the
    #: yardstick of :class:`DivergenceGuard`. Kept in the checkpoint, so a resumed run measures the same.
    start_cost: float | None = None

    def __getitem__(self, key: str) -> list:
        return [row.get(key) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def epochs_done(self) -> int:
        return self.rows[-1]["epoch"] if self.rows else 0

    @property
    def best(self) -> dict | None:
        """The row with the highest validation accuracy (the first one on ties), or ``None``."""
        scored = [r for r in self.rows if r.get("val_accuracy") is not None]
        return max(scored, key=lambda r: r["val_accuracy"]) if scored else None

    def plot(self, title: str | None = None):
        """Learning curves as a matplotlib Figure (shown inline in a notebook)."""
        from ..plots import curves_figure

        return curves_figure(self, title)


# -- the loop -------------------------------------------------------------------------------------------
class Callback:
    """Hooks called by :func:`fit`; ``state`` is the :class:`TrainingState` (model, optimizer, history...)."""

    def on_train_begin(self, state) -> None: ...

    def on_epoch_begin(self, state, epoch: int, n_batches: int) -> None: ...

    def on_batch_end(self, state, batch: int, loss: float) -> None: ...

    def on_epoch_end(self, state, row: dict) -> bool | None:
        """Return True to stop training after this epoch."""

    def on_train_end(self, state) -> None: ...


@dataclass
class TrainingState:
    """What callbacks can see: the objects being trained and how far training has gone."""

    model: object
    optimizer: object
    loss: object
    seed: int  # the batches of epoch e are drawn from (seed, e)
    history: History
    epochs: int
    epoch: int = 0  # the epoch running now (1-based); 0 before the first
    error: str | None = None


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running mean loss (refreshed every ``every`` batches).

    The bar is redrawn at most every ``mininterval`` seconds, so it costs nothing measurable per batch.
    """

    def __init__(self, every: int = 10, file=None, mininterval: float = 0.2):
        self.every = every
        self.file = file
        self.mininterval = mininterval
        self.bar = None

    def on_epoch_begin(self, state, epoch, n_batches):
        from tqdm.auto import tqdm

        self.total, self.count = 0.0, 0
        self.bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{state.epochs}", unit="batch", leave=False,
                        file=self.file or sys.stderr, dynamic_ncols=True, mininterval=self.mininterval)

    def on_batch_end(self, state, batch, loss):
        self.total += loss
        self.count += 1
        if self.count % self.every == 0:
            self.bar.set_postfix_str(f"loss {self.total / self.count:.4f}", refresh=False)
            self.bar.update(self.every)

    def on_epoch_end(self, state, row):
        self.close()

    def on_train_end(self, state):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_row(row: dict, epochs: int) -> str:
    """``epoch  3/10  train cost 0.1234 acc 96.51%  val cost 0.1010 acc 97.02%  lr 1.0e-03  12.3 s``."""
    width = len(str(epochs))
    parts = [f"epoch {row['epoch']:>{width}}/{epochs}"]
    for split in ("train", "val"):
        cost, acc = row.get(f"{split}_cost"), row.get(f"{split}_accuracy")
        if cost is None and acc is None:
            continue
        text = split
        if cost is not None:
            text += f" cost {cost:.4f}"
        if acc is not None:
            text += f" acc {acc:.2%}"
        parts.append(text)
    parts.append(f"lr {row['lr']:.1e}")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


class EpochLog(Callback):
    """One line per epoch with the monitors that are on and the epoch time."""

    def __init__(self, echo=print):
        self.echo = echo

    def on_epoch_end(self, state, row):
        self.echo(format_row(row, state.epochs))


class EarlyStopping(Callback):
    """Stop when the validation accuracy has not improved for ``patience`` epochs (Nielsen's "no
    improvement in 10 epochs"); needs the validation-accuracy monitor."""

    def __init__(self, patience: int, echo=print):
        if patience < 1:
            raise ConfigError(f"early stopping: patience must be >= 1 epoch, received {patience!r}")
        self.patience = patience
        self.echo = echo

    def on_epoch_end(self, state, row):
        best = state.history.best
        if best is None:
            return False
        waited = row["epoch"] - best["epoch"]
        if waited >= self.patience:
            self.echo(f"early stop: no improvement of validation accuracy for {waited} epochs "
                      f"(best {best['val_accuracy']:.2%} at epoch {best['epoch']})")
            return True
        return False


class DivergenceGuard:
    """Says when an epoch shows that training has diverged, although the loss is still a finite number.

    NaN and infinity are caught batch by batch by the losses themselves; this catches the two ways a run
    with a far too high learning rate (``--lr 1e6``) otherwise "completes" at chance accuracy:

    * **explosion**: the epoch's training cost is more than ``explode`` (10) times the cost of the
      untrained model (:attr:`History.start_cost`). Training that works lowers the cost below its
      starting value from the first epoch on (the recipes of docs/training.md: the epoch means are
      already below the start in epoch 1); a cross-entropy at 10 x its start (about 23 for ten classes
      instead of 2.3) means the weights have been thrown far away. Measured: ``--lr 1e6`` gives 10^6 in
      epoch 1.
    * **stall at chance**: for ``patience`` (3) epochs in a row the training accuracy is within
      ``margin`` (5 points) of what always answering the most frequent class gets, *and* the training
      cost of the last of those epochs is not ``min_progress`` (1 %) below the first one's. Saturated
      sigmoid units (quadratic cost at ``--lr 1e6``) sit at exactly 0.5000 and 9.6 % for ever; a slow
      but healthy start (Nielsen's large initialisation, 12 % then 16 % then 20 %) lowers its cost by
      several per cent an epoch, so the two conditions together never stop it. The window is stretched to
      at least ``min_updates`` (1,000) training steps when :attr:`steps_per_epoch` is known (``fit`` sets
      it): the course network trained on 100 images with batch 1 makes 100 steps an epoch and, as its
      author's own printout shows (summed error 46.83, 46.35, 45.91 in epochs 2-4), sits at chance for
      several epochs before it learns; three such epochs are 300 steps, too few to call it stuck.

    Without a training cost the validation cost is used, and likewise for the accuracy; with neither
    monitor the corresponding rule is off. ``stall=False`` turns the second rule off (``cnnlab train
    --keep-going-when-stuck``).
    """

    def __init__(self, explode: float = 10.0, patience: int = 3, margin: float = 0.05, min_progress: float = 0.01,
                 min_updates: int = 1000, stall: bool = True):
        self.explode, self.patience, self.margin, self.min_progress = explode, patience, margin, min_progress
        self.stall = stall
        self.min_updates = min_updates
        self.steps_per_epoch: int | None = None  # set by fit; None: the window is `patience` epochs

    @staticmethod
    def _value(row: dict, what: str):
        value = row.get(f"train_{what}")
        return value if value is not None else row.get(f"val_{what}")

    def check(self, history: History, row: dict, chance: float) -> str | None:
        """A sentence saying why epoch ``row`` shows divergence, or ``None``; ``history`` holds the epochs
        before it and ``chance`` the accuracy of always answering the most frequent class."""
        cost = self._value(row, "cost")
        start = history.start_cost
        if start is None and history.rows:  # a checkpoint from before start_cost was kept
            start = self._value(history.rows[0], "cost")
        if cost is not None and start and start > 0 and cost > self.explode * start:
            return (f"the training cost rose to {cost:.4g}, more than {self.explode:g}x the untrained model's "
                    f"{start:.4g}: training diverged (learning rate {row['lr']:.3g} is too high)")
        if not self.stall:
            return None
        epochs = self.patience
        if self.steps_per_epoch:
            epochs = max(epochs, -(-self.min_updates // self.steps_per_epoch))
        window = [*history.rows[-(epochs - 1):], row] if epochs > 1 else [row]
        if len(window) < epochs:
            return None
        accuracies = [self._value(r, "accuracy") for r in window]
        costs = [self._value(r, "cost") for r in window]
        if None in accuracies or None in costs:
            return None
        if max(accuracies) <= chance + self.margin and costs[-1] > (1 - self.min_progress) * costs[0]:
            return (f"accuracy has stayed at chance ({max(accuracies):.1%} at most, {chance:.1%} for always "
                    f"answering the most frequent class) for {epochs} epochs and the cost no longer "
                    f"falls: training is stuck (learning rate {row['lr']:.3g} may be too high)")
        return None
