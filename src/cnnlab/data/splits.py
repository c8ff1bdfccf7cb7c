"""Validation splits and subsets, all reproducible.

* :func:`train_val_split` — hold out a fraction (``0.2`` -> 80/20) or a count (``10_000``) for validation,
  shuffled from a seed; ``seed=None`` keeps the file order and takes the *last* samples, which with
  ``10_000`` on MNIST's training set is the classic 50,000 / 10,000 split (Nielsen's ``mnist.pkl.gz``).
  ``stratified=True`` keeps every class in the same proportion on both sides.
* :func:`first_n` — the first ``n`` samples (file order).
* :func:`balanced_subset` — ``n`` samples with the classes as equal as possible (for data-size studies:
  1,000 MNIST images = 100 per digit).
"""

from __future__ import annotations

import numpy as np

from ..engine.backend import make_rng
from ..engine.errors import DataError
from .dataset import Dataset


def _count(n: int | float, total: int, what: str) -> int:
    """A count from a fraction (a float in (0, 1)) or a count (an int in [1, total - 1])."""
    if isinstance(n, (float, np.floating)):
        if not 0.0 < n < 1.0:
            raise DataError(f"{what}: a fraction must be a float in (0, 1) (or give a count as an int), got {n}")
        count = int(round(float(n) * total))
    elif isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        count = int(n)
    else:
        raise DataError(f"{what}: expected a fraction (float) or a count (int), got {n!r}")
    if not 1 <= count <= total - 1:
        raise DataError(f"{what}: needs between 1 and {total - 1} samples out of {total}, got {n} -> {count}")
    return count


def _stratified_val_indices(labels: np.ndarray, val_count: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``val_count`` indices so each class contributes in proportion to its size (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (val_count / len(labels))
    take = np.floor(exact).astype(np.int64)
    shortfall = val_count - take.sum()
    take[np.argsort(exact - take)[::-1][:shortfall]] += 1
    # One shuffled order, then the first `take[c]` members of each class in that order.
    order = rng.permutation(len(labels))
    sorted_order = order[np.argsort(labels[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    return np.sort(sorted_order[rank < np.repeat(take, counts)])


def train_val_split(
    dataset: Dataset,
    val: int | float = 0.2,
    seed: int | np.random.Generator | None = 0,
    stratified: bool = False,
) -> tuple[Dataset, Dataset]:
    """Split into ``(train, val)``; ``val`` is a fraction (``0.2``) or a count (``10_000``).

    With ``seed=None`` nothing is shuffled and the validation set is the last ``val`` samples.
    """
    total = len(dataset)
    val_count = _count(val, total, "validation split")
    if seed is None:
        if stratified:
            raise DataError("a stratified split needs a seed (it shuffles within each class)")
        val_idx = np.arange(total - val_count, total)
    else:
        rng = make_rng(seed)
        if stratified:
            val_idx = _stratified_val_indices(dataset.labels, val_count, rng)
        else:
            val_idx = np.sort(rng.permutation(total)[:val_count])
    mask = np.ones(total, dtype=bool)
    mask[val_idx] = False
    train = dataset.subset(np.flatnonzero(mask), split="train", note=f"{total - val_count} of {total}")
    held = dataset.subset(val_idx, split="val", note=f"{val_count} held out of {total}")
    return train, held


def classic_mnist_split(dataset: Dataset) -> tuple[Dataset, Dataset]:
    """MNIST's 60,000 training images as the classic 50,000 train / 10,000 validation (last 10,000)."""
    return train_val_split(dataset, 10_000, seed=None)


def first_n(dataset: Dataset, n: int) -> Dataset:
    """The first ``n`` samples, in file order."""
    if not 1 <= n <= len(dataset):
        raise DataError(f"first_n: n must be between 1 and {len(dataset)}, got {n}")
    return dataset.subset(np.arange(n), note=f"first {n}")


def balanced_subset(dataset: Dataset, n: int, seed: int | np.random.Generator | None = 0) -> Dataset:
    """``n`` samples drawn at random with every class equally represented (±1 when ``n`` is not a multiple).

    The first ``n % K`` classes get one extra sample. Raises :class:`DataError` when a class is too small.
    """
    k = dataset.num_classes
    if not 1 <= n <= len(dataset):
        raise DataError(f"balanced_subset: n must be between 1 and {len(dataset)}, got {n}")
    want = np.full(k, n // k, dtype=np.int64)
    want[: n % k] += 1
    have = dataset.class_counts()
    short = np.flatnonzero(have < want)
    if short.size:
        c = short[0]
        raise DataError(
            f"balanced_subset: class {dataset.class_names[c]!r} has {have[c]} samples, {want[c]} needed for n={n}"
        )
    rng = make_rng(seed)
    order = rng.permutation(len(dataset))
    by_class = order[np.argsort(dataset.labels[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(have)[:-1]])
    rank = np.arange(len(dataset)) - np.repeat(starts, have)
    chosen = np.sort(by_class[rank < np.repeat(want, have)])
    return dataset.subset(chosen, note=f"balanced {n}")
