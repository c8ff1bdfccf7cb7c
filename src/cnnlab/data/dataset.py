"""The one container every loader returns: uint8 images, int64 labels, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..engine.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image set kept as stored: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``.

    Conversion to float32 happens per batch (:mod:`cnnlab.data.batches`), so a dataset costs one byte
    per pixel in memory (MNIST train: 47 MB).

    Attributes:
        images: uint8 ``(N, C, H, W)``; MNIST is ``(N, 1, 28, 28)``, CIFAR-10 ``(N, 3, 32, 32)``.
        labels: int64 ``(N,)`` with values in ``[0, len(class_names))``.
        class_names: one name per class, indexed by label.
        name: the dataset name (``"mnist"``, ``"folder:/path"``, ...), plus a note for subsets.
        split: ``"train"``, ``"test"``, ``"val"``, ...
        source: the folder (or file) the data was read from, ``None`` for data made in memory.
        verified: True when the files matched the SHA-256 digests known for them.
        mode: for image folders, how the pictures were converted (``"digit"``, ``"gray"``, ``"rgb"``).
        notes: what the loader decided on the user's behalf, as sentences (e.g. why that mode).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str
    split: str = "train"
    source: Path | None = None
    verified: bool = False
    mode: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(
                f"dataset {self.name!r}: images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise DataError(
                f"dataset {self.name!r}: labels must have shape ({len(self.images)},), got {self.labels.shape}"
            )
        if self.labels.dtype != np.int64:
            object.__setattr__(self, "labels", self.labels.astype(np.int64))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """Per-sample shape ``(C, H, W)``: what a model is built with."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class, int64 ``(num_classes,)``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices, split: str | None = None, note: str | None = None) -> "Dataset":
        """A new dataset made of the samples at ``indices`` (fancy indexing: a copy of those samples only)."""
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            images=self.images[indices],
            labels=self.labels[indices],
            split=split or self.split,
            name=f"{self.name} ({note})" if note else self.name,
        )

    def describe(self) -> str:
        """One line: name, split, count, shape, verified."""
        mark = "verified" if self.verified else "not verified"
        return f"{self.name} [{self.split}] {len(self)} x {self.sample_shape} uint8, {self.num_classes} classes, {mark}"
