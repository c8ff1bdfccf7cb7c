"""Mini-batches: uint8 images in, float32 ``(x, y)`` batches out.

A :class:`Batches` object is an iterable over one epoch at a time::

    batches = Batches(train, batch_size=64, seed=0, one_hot=True, augment=Augmentation())
    for epoch in range(10):
        for x, y in batches:          # x float32 (B, C, H, W), y float32 (B, 10) or int64 (B,)
            ...

Each epoch visits the samples in a fresh order drawn from ``(seed, epoch)``, so epoch 3 is the same
whatever happened before it. Only the indices are shuffled: every batch gathers its own rows with fancy
indexing (a copy of one batch, never of the whole set), then converts them to float32 in ``[0, 1]``,
augments them if asked, and standardizes them with ``(x - mean) / std`` if given.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..engine.errors import ConfigError, DataError
from .dataset import Dataset
from .normalize import normalize, per_channel


def one_hot(labels: np.ndarray, num_classes: int, dtype=np.float32) -> np.ndarray:
    """Integer labels ``(N,)`` -> one-hot rows ``(N, num_classes)``."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"one_hot: labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    out = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def batch_bounds(n: int, batch_size: int, fold_single: bool = False) -> list[int]:
    """Start of every mini-batch of an epoch over ``n`` samples, then ``n``: batch ``b`` is
    ``order[bounds[b]:bounds[b + 1]]``.

    With ``fold_single``, a last batch of one sample is folded into the batch before it (which gets
    ``batch_size + 1`` samples): batch normalization cannot train on one value per channel (its
    variance is 0), so a BatchNorm model would fail on, say, 21 images in batches of 10.
    """
    bounds = list(range(0, n, batch_size)) + [n]
    if fold_single and len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return bounds


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each channel, in ``[0, 1]`` units, ``(C,)`` each.

    Computed from a 256-bin histogram of each channel, so no float copy of the images is made
    (MNIST train gives mean 0.1307, std 0.3081).
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].reshape(-1), minlength=256).astype(np.float64)
        p = counts / counts.sum()
        mean = p @ values
        means.append(mean)
        stds.append(np.sqrt(max(p @ (values - mean) ** 2, 0.0)))
    return np.asarray(means, dtype=np.float32), np.asarray(stds, dtype=np.float32)


class Batches:
    """Shuffled, normalized, optionally augmented mini-batches over a :class:`Dataset` — the one batching
    of cnnlab (:func:`cnnlab.training.loop.fit` trains on it).

    Args:
        data: a :class:`Dataset`, or a pair ``(images (N, C, H, W), labels (N,))``: uint8 pixels, or
            floats already scaled (then only ``mean`` / ``std`` apply).
        batch_size: samples per batch.
        shuffle: new order every epoch (from ``seed`` and the epoch number); False keeps file order.
        seed: makes the orders and augmentations reproducible (None: random, fixed per object).
        mean, std: standardization after scaling to [0, 1]; one number or one per channel.
        preprocessing: a model's whole description ``{"scale", "mean", "std"}`` (see
            :func:`~cnnlab.data.normalize.normalize`); ``mean`` / ``std`` given here win.
        input_shape: the network's per-sample shape, e.g. ``(784,)`` for an MLP (batches are reshaped).
        one_hot: ``y`` as float32 ``(B, K)`` instead of int64 ``(B,)``.
        num_classes: K for one-hot; taken from the dataset's class names when not given.
        drop_last: drop the final batch when it is smaller than ``batch_size``.
        fold_single: fold a last batch of one sample into the one before (see :func:`batch_bounds`).
        augment: a callable ``augment(x, rng) -> x`` applied to float batches in [0, 1] (e.g.
            :class:`~cnnlab.data.augment.Augmentation`).
    """

    def __init__(
        self,
        data: Dataset | tuple[np.ndarray, np.ndarray],
        batch_size: int = 64,
        *,
        shuffle: bool = True,
        seed: int | None = 0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        one_hot: bool = False,
        num_classes: int | None = None,
        drop_last: bool = False,
        augment=None,
        preprocessing: dict | None = None,
        input_shape=None,
        fold_single: bool = False,
    ):
        if isinstance(data, Dataset):
            images, labels = data.images, data.labels
            num_classes = num_classes or data.num_classes
        else:
            images, labels = data
        images = images if isinstance(images, np.ndarray) else np.asarray(images)
        if images.ndim < 2 or not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
            raise DataError(f"Batches expects uint8 images (N, C, H, W) or float inputs, got {images.dtype} "
                            f"{images.shape}")
        if labels.shape != (len(images),):
            raise DataError(f"Batches: labels must have shape ({len(images)},), got {labels.shape}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if one_hot and num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 0
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.one_hot = shuffle, drop_last, one_hot
        self.num_classes = num_classes
        given = {key: value for key, value in (("mean", mean), ("std", std)) if value is not None}
        self.preprocessing = {**(preprocessing or {}), **given}
        per_channel(self.preprocessing.get("mean"), images.shape[1], "mean")  # checked now, not at batch 1
        per_channel(self.preprocessing.get("std"), images.shape[1], "std")
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.fold_single = fold_single
        self.augment = augment
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % (2**63))
        self.epochs_done = 0

    def bounds(self) -> list[int]:
        """Where each batch of an epoch starts in the shuffled order, then N (see :func:`batch_bounds`)."""
        bounds = batch_bounds(len(self.labels), self.batch_size, self.fold_single)
        if self.drop_last and len(bounds) > 1 and bounds[-1] - bounds[-2] < self.batch_size:
            del bounds[-1]
        return bounds

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.bounds()) - 1

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The next epoch (0, 1, 2, ... on successive loops)."""
        epoch = self.epochs_done
        self.epochs_done += 1
        return self.epoch(epoch)

    def epoch(self, number: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch ``number``: the same ones every time it is asked for."""
        n = len(self.labels)
        order = np.random.default_rng([self.seed, number]).permutation(n) if self.shuffle else np.arange(n)
        aug_rng = np.random.default_rng([self.seed, number, 1])
        bounds = self.bounds()
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield self._make(order[start:stop], aug_rng)

    def _make(self, idx: np.ndarray, aug_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        images = self.images[idx]  # gathers this batch only
        if self.augment is None:
            x = normalize(images, self.preprocessing, self.input_shape)
        else:  # augmentations work on pixels in [0, 1]; the mean and std come after them
            x = self.augment(normalize(images, {**self.preprocessing, "mean": 0.0, "std": 1.0}), aug_rng)
            x = normalize(x, self.preprocessing, self.input_shape)  # float in: only (x - mean) / std
        y = self.labels[idx]
        if self.one_hot:
            y = one_hot(y, self.num_classes)
        return x, y
