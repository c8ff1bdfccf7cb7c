"""Datasets for cnnlab: found, downloaded, verified, split, batched and augmented.

Files -> uint8 arrays (verified) -> float32 batches. The modules, one concern each:

* ``idx`` / ``cifar`` / ``folder`` — file formats (IDX for MNIST-like sets, CIFAR-10 binary, image folders);
* ``paths`` — where data lives; ``registry`` — names, files, digests, class names, mirrors;
* ``verify`` — SHA-256 checks and the record of files already verified; ``download`` — mirrors, progress,
  temp file + rename; ``loading`` — :func:`load_dataset` and :func:`download_dataset`;
* ``splits`` — validation splits and subsets; ``batches`` — mini-batches; ``augment`` — augmentation.

Example::

    from cnnlab.data import load_dataset, train_val_split, Batches, Augmentation
    train, val = train_val_split(load_dataset("mnist"), 10_000, seed=None)   # 50,000 / 10,000
    for x, y in Batches(train, 64, seed=0, augment=Augmentation()):
        ...  # x float32 (64, 1, 28, 28) in [0, 1], y int64 (64,)
"""

from .augment import Augmentation, save_augmentation_grid
from .batches import Batches, batch_bounds, channel_stats, one_hot
from .dataset import Dataset
from .loading import download_dataset, load_dataset
from .registry import DATASETS, get_spec
from .splits import balanced_subset, classic_mnist_split, first_n, train_val_split

__all__ = [
    "Augmentation",
    "Batches",
    "DATASETS",
    "Dataset",
    "balanced_subset",
    "channel_stats",
    "classic_mnist_split",
    "download_dataset",
    "first_n",
    "get_spec",
    "load_dataset",
    "one_hot",
    "save_augmentation_grid",
    "batch_bounds",
    "train_val_split",
]
