"""Validation splits and subsets: sizes, disjointness, reproducibility, class balance."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import Dataset, balanced_subset, classic_mnist_split, first_n, train_val_split
from cnnlab.engine.errors import DataError


def dataset(n=1000, seed=0, num_classes=10, weights=None):
    rng = np.random.default_rng(seed)
    labels = rng.choice(num_classes, size=n, p=weights)
    images = np.zeros((n, 1, 4, 4), np.uint8)
    images.reshape(n, -1)[:, :2] = np.stack([np.arange(n) % 256, np.arange(n) // 256], axis=1)  # sample id
    return Dataset(images, labels, tuple(str(c) for c in range(num_classes)), "toy")


def ids(ds):
    flat = ds.images.reshape(len(ds), -1).astype(int)
    return flat[:, 0] + 256 * flat[:, 1]


@pytest.mark.parametrize("val, expected", [(0.2, 200), (0.25, 250), (10, 10), (999, 999)])
def test_fraction_or_count(val, expected):
    ds = dataset()
    train, held = train_val_split(ds, val, seed=3)
    assert len(held) == expected and len(train) == 1000 - expected
    assert held.split == "val" and train.split == "train"
    assert set(ids(train)).isdisjoint(ids(held))
    assert sorted([*ids(train), *ids(held)]) == list(range(1000))
    np.testing.assert_array_equal(held.labels, ds.labels[ids(held)])  # labels travel with their images


def test_seeded_split_is_reproducible_and_seed_dependent():
    ds = dataset()
    a = ids(train_val_split(ds, 0.2, seed=1)[1])
    b = ids(train_val_split(ds, 0.2, seed=1)[1])
    c = ids(train_val_split(ds, 0.2, seed=2)[1])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unshuffled_split_takes_the_last_samples_like_the_classic_mnist_split():
    ds = dataset(n=60_000)
    train, held = classic_mnist_split(ds)
    assert (len(train), len(held)) == (50_000, 10_000)
    np.testing.assert_array_equal(ids(train), np.arange(50_000))
    np.testing.assert_array_equal(ids(held), np.arange(50_000, 60_000))


def test_stratified_split_keeps_class_proportions():
    ds = dataset(n=2000, weights=[0.5, 0.3, 0.1, 0.1], num_classes=4)
    train, held = train_val_split(ds, 0.2, seed=0, stratified=True)
    assert len(held) == 400
    expected = ds.class_counts() * 0.2
    assert np.all(np.abs(held.class_counts() - expected) <= 1)
    assert set(ids(train)).isdisjoint(ids(held))


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -3, 0, 1000, "10", True])
def test_invalid_sizes(bad):
    with pytest.raises(DataError):
        train_val_split(dataset(), bad)


def test_stratified_needs_a_seed():
    with pytest.raises(DataError, match="needs a seed"):
        train_val_split(dataset(), 0.2, seed=None, stratified=True)


def test_first_n():
    sub = first_n(dataset(), 7)
    np.testing.assert_array_equal(ids(sub), np.arange(7))
    assert "first 7" in sub.name
    with pytest.raises(DataError, match="between 1 and 1000"):
        first_n(dataset(), 1001)


@pytest.mark.parametrize("n", [1000 // 2, 103, 10])
def test_balanced_subset(n):
    ds = dataset(n=3000, weights=[0.3, 0.2, *[0.0625] * 8])
    sub = balanced_subset(ds, n, seed=4)
    counts = sub.class_counts()
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert len(set(ids(sub))) == n
    np.testing.assert_array_equal(sub.labels, ds.labels[ids(sub)])
    np.testing.assert_array_equal(ids(sub), ids(balanced_subset(ds, n, seed=4)))
    assert not np.array_equal(ids(sub), ids(balanced_subset(ds, n, seed=5)))


def test_balanced_subset_class_too_small():
    ds = dataset(n=200, weights=[0.9, 0.1], num_classes=2)
    with pytest.raises(DataError, match=r"class '1' has \d+ samples, 100 needed"):
        balanced_subset(ds, 200)
