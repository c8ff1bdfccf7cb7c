"""The real MNIST and Fashion-MNIST from CNNLAB_DATA (skipped when absent, failed under CNNLAB_REQUIRE_DATA=1)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import channel_stats, classic_mnist_split, load_dataset
from cnnlab.data.registry import FASHION_CLASSES

pytestmark = pytest.mark.data


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_dataset_loads_verified_with_published_sizes(real_data, name):
    root = real_data(name)
    train = load_dataset(name, "train", root, download=False)
    test = load_dataset(name, "test", root, download=False)
    assert train.verified and test.verified
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.class_counts().sum() == 60_000 and test.class_counts().min() > 800
    assert train.images.max() == 255 and train.images.min() == 0
    assert train.source == root / name


def test_real_mnist_facts(real_data):
    root = real_data("mnist")
    train = load_dataset("mnist", "train", root, download=False)
    test = load_dataset("mnist", "test", root, download=False)
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first digits
    assert test.labels[:3].tolist() == [7, 2, 1]
    assert train.class_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    mean, std = channel_stats(train.images)
    assert abs(mean[0] - 0.1307) < 1e-3 and abs(std[0] - 0.3081) < 1e-3  # the usual normalization constants
    fit, val = classic_mnist_split(train)
    assert (len(fit), len(val)) == (50_000, 10_000)
    np.testing.assert_array_equal(val.labels, train.labels[50_000:])


def test_real_fashion_mnist_is_balanced_with_names(real_data):
    root = real_data("fashion-mnist")
    train = load_dataset("fashion-mnist", "train", root, download=False)
    assert train.class_names == FASHION_CLASSES
    assert train.class_counts().tolist() == [6000] * 10
    assert load_dataset("fashion-mnist", "test", root, download=False).class_counts().tolist() == [1000] * 10
