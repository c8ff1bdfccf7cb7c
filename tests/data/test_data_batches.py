"""Mini-batches: coverage, shuffling per epoch, normalization, one-hot, last batch, no full copy."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data.normalize import normalize
from cnnlab.data import Batches, Dataset, channel_stats, one_hot
from cnnlab.engine.errors import ConfigError, DataError


def dataset(n=103, channels=1):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, channels, 5, 5), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256  # sample id
    labels = rng.integers(0, 10, n)
    return Dataset(images, labels, tuple("abcdefghij"), "toy")


def ids(x):
    return np.rint(x[:, 0, 0, 0] * 255).astype(int)


def test_one_epoch_visits_every_sample_once_and_keeps_pairs():
    ds = dataset()
    batches = Batches(ds, 10, seed=0)
    seen = []
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 5, 5) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        np.testing.assert_array_equal(y, ds.labels[ids(x)])
        np.testing.assert_allclose(x, ds.images[ids(x)] / 255.0, rtol=1e-6)
        seen += list(ids(x))
    assert sorted(seen) == list(range(103))
    assert len(batches) == 11


def test_last_partial_batch_kept_or_dropped():
    sizes = [len(x) for x, _ in Batches(dataset(), 10)]
    assert sizes == [10] * 10 + [3]
    dropped = Batches(dataset(), 10, drop_last=True)
    assert [len(x) for x, _ in dropped] == [10] * 10 and len(dropped) == 10


def test_shuffle_differs_per_epoch_and_is_reproducible():
    first = [ids(x) for x, _ in Batches(dataset(), 103, seed=5)][0]
    b = Batches(dataset(), 103, seed=5)
    epoch0 = next(iter(b))[0]
    epoch1 = next(iter(b))[0]
    np.testing.assert_array_equal(ids(epoch0), first)
    assert not np.array_equal(ids(epoch0), ids(epoch1))
    np.testing.assert_array_equal(ids(next(b.epoch(1))[0]), ids(epoch1))  # epoch 1 asked again: same order
    assert not np.array_equal(first, [ids(x) for x, _ in Batches(dataset(), 103, seed=6)][0])
    np.testing.assert_array_equal(ids(next(iter(Batches(dataset(), 103, shuffle=False)))[0]), np.arange(103))


def test_mean_std_per_channel_and_scalar():
    ds = dataset(channels=3)
    x, _ = next(iter(Batches(ds, 103, shuffle=False, mean=[0.1, 0.2, 0.3], std=0.5)))
    ref = (ds.images / 255.0 - np.array([0.1, 0.2, 0.3])[None, :, None, None]) / 0.5
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize(ds.images, {"mean": [0.1, 0.2, 0.3], "std": 0.5}), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="one number or 3"):
        Batches(ds, 4, mean=[0.1, 0.2])


def test_one_hot_batches_and_helper():
    x, y = next(iter(Batches(dataset(), 8, one_hot=True)))
    assert y.shape == (8, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(y.sum(axis=1), 1)
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(DataError, match="0..2"):
        one_hot(np.array([3]), 3)


def test_channel_stats_match_a_direct_computation():
    ds = dataset(channels=3)
    mean, std = channel_stats(ds.images)
    ref = ds.images / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-5)


def test_batches_do_not_copy_the_whole_set(monkeypatch):
    """Each batch gathers only its own rows: the uint8 array is indexed with batch-sized index arrays."""
    ds = dataset(n=1000)
    gathered = []

    class Spy(np.ndarray):
        def __getitem__(self, key):
            gathered.append(np.size(key) if isinstance(key, np.ndarray) else None)
            return np.asarray(self)[key]

    spied = ds.images.view(Spy)
    for x, _ in Batches((spied, ds.labels), 32, num_classes=10):
        pass
    assert gathered and max(gathered) == 32 and None not in gathered


def test_augment_callable_gets_float_batch_and_a_reproducible_rng():
    calls = []

    def augment(x, rng):
        calls.append((x.dtype, float(rng.random())))
        return x + 1.0

    b = Batches(dataset(), 50, seed=1, augment=augment, mean=0.5)
    x, _ = next(b.epoch(0))
    assert x.min() >= 0.5  # augment ran before the mean was subtracted
    next(b.epoch(0))
    assert calls[0] == calls[1] and calls[0][0] == np.float32


def test_bad_arguments():
    with pytest.raises(ConfigError, match="batch_size"):
        Batches(dataset(), 0)
    with pytest.raises(DataError, match="uint8"):
        Batches((np.zeros((3, 1, 2, 2), np.int64), np.zeros(3)), 2)
    with pytest.raises(DataError, match="uint8"):
        Batches((np.zeros(3, np.uint8), np.zeros(3)), 2)
    with pytest.raises(DataError, match=r"labels must have shape \(3,\)"):
        Batches((np.zeros((3, 1, 2, 2), np.uint8), np.zeros(4)), 2)


def test_normalize_scales_uint8_standardizes_and_never_touches_the_callers_array():
    from cnnlab.data.normalize import normalize

    images = dataset(8, channels=3).images
    x = normalize(images, {"scale": 1 / 255, "mean": [0.1, 0.2, 0.3], "std": 0.5})
    ref = (images / 255.0 - np.array([0.1, 0.2, 0.3])[None, :, None, None]) / 0.5
    assert x.dtype == np.float32 and x.shape == images.shape
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)
    floats = images / np.float32(255)
    before = floats.copy()
    y = normalize(floats, {"mean": 0.5, "std": 0.25})  # floats are already scaled: only (x - mean) / std
    np.testing.assert_allclose(y, (before - 0.5) / 0.25, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(floats, before)
    assert normalize(floats) is floats  # mean 0, std 1: no pass over the data
    with pytest.raises(ConfigError, match="std must be > 0"):
        normalize(images, {"std": 0.0})
    with pytest.raises(ConfigError, match="mean must be one number or 3"):
        normalize(images, {"mean": "dark"})


def test_every_caller_takes_its_default_from_mnist_preprocessing(monkeypatch):
    """One default (cnnlab.data.normalize.MNIST_PREPROCESSING) and one function: changing the default changes every
    path from pixels to network inputs alike."""
    from cnnlab.data import normalize as io  # where the default lives
    from cnnlab.training.presets import build
    from cnnlab.data.augment import Augmentation
    from cnnlab.training.recipes import preprocessing_for
    from cnnlab.recognition.serve.recognize import model_inputs
    from cnnlab.visualize import model_input

    monkeypatch.setitem(io.MNIST_PREPROCESSING, "scale", 1 / 100)
    images = np.full((2, 1, 28, 28), 50, dtype=np.uint8)
    assert np.allclose(normalize(images), 0.5)
    assert np.allclose(normalize(images, input_shape=(784,)), 0.5)
    assert np.allclose(next(iter(Batches((images, np.zeros(2, dtype=np.int64)), 2)))[0], 0.5)
    assert np.allclose(Augmentation(rotation=0, shift=0, scale=0)(images), 0.5)
    assert preprocessing_for("folder:x", (1, 28, 28))["scale"] == 1 / 100
    monkeypatch.setitem(io.MNIST_PREPROCESSING, "mean", 0.25)  # the default a stored model falls back on
    model = build("lenet5", seed=0)
    model.info = {"preprocessing": {"std": 0.5}}
    picture = np.full((28, 28), 0.75, dtype=np.float32)
    assert np.allclose(model_input(picture, model), 1.0)
    assert np.allclose(model_inputs(model, picture[None]), 1.0)
