"""An optional TensorBoard log beside ``metrics.csv``: ``cnnlab train --tensorboard DIR``.

After every epoch the callback writes, as TensorBoard event files in ``DIR`` (read them with
``tensorboard --logdir DIR``), the scalars of that epoch's row — ``cost/train``, ``cost/val``,
``accuracy/train``, ``accuracy/val``, ``lr``, ``seconds`` (the monitors switched off are left out) — and
a histogram of every parameter (``weights/layers.0.W``, ...), so the spread of the weights can be
watched epoch by epoch. The step is the epoch number (1-based), so a resumed run continues its curves.

The event files are written with ``tensorboardX`` (an optional extra: ``pip install 'cnnlab[tensorboard]'``),
a small library that needs neither TensorFlow nor PyTorch. Use one ``DIR`` per run (``tb/lenet5-a``,
``tb/lenet5-b``) and point TensorBoard at the parent folder to compare them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..engine.backend import to_numpy
from ..engine.errors import ConfigError
from .callbacks import Callback

#: row key -> TensorBoard tag ("group/name" puts train and val curves of one quantity side by side).
SCALAR_TAGS = {
    "train_cost": "cost/train",
    "val_cost": "cost/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "lr": "lr",
    "seconds": "seconds",
}


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboardX package: pip install 'cnnlab[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Write each epoch's metrics and parameter histograms as TensorBoard events into ``logdir``.

    Args:
        logdir: the folder of the event files (created when missing; must not be a file).
        histograms: also log a histogram of every parameter after each epoch.
    """

    def __init__(self, logdir: str | os.PathLike, histograms: bool = True):
        self.writer_class = _summary_writer_class()  # fails here, before any training, when it is missing
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise ConfigError(f"--tensorboard {self.logdir}: is a file; expected a folder for the event files")
        self.histograms = histograms
        self.writer = None

    def on_train_begin(self, state) -> None:
        self.writer = self.writer_class(logdir=str(self.logdir))

    def on_epoch_end(self, state, row: dict) -> None:
        step = row["epoch"]
        for key, tag in SCALAR_TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), step)
        if self.histograms:
            for name, layer, key in state.model.parameters():
                self.writer.add_histogram(f"weights/{name}", to_numpy(layer.params[key]).ravel(), step)
        self.writer.flush()  # a TensorBoard that is watching sees the epoch now, not at the end

    def on_train_end(self, state) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
