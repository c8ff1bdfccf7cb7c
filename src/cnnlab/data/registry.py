"""What cnnlab knows about each named dataset: files, digests, class names, mirrors.

Digests are SHA-256 of the *uncompressed* payload (the IDX bytes inside the ``.gz``), so a re-compressed
copy is accepted and a damaged one is not. They match ``SHA256SUMS.uncompressed`` next to the shared
copies of the datasets. CIFAR-10's authors publish only the MD5 of their archive; we check it on
download and record the SHA-256 of the extracted ``.bin`` files in ``SHA256SUMS`` beside them, which later
loads verify against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.errors import DataError

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, download and verify one named dataset.

    Attributes:
        name: registry name, also the sub-folder of the data folder.
        kind: ``"idx"`` (one images + one labels file per split) or ``"cifar"`` (binary batches).
        class_names: indexed by label.
        sample_shape: per-sample ``(C, H, W)``.
        splits: split -> file names (uncompressed names; ``.gz`` variants are accepted for IDX).
        sha256: uncompressed file name -> SHA-256 hex digest of its payload.
        mirrors: base URLs tried in order; a file is fetched from ``<base>/<download name>``.
        archive / archive_md5: the single archive to download instead of per-file downloads (CIFAR-10).
        sizes: split -> number of samples, for messages and ``data info``.
    """

    name: str
    kind: str
    class_names: tuple[str, ...]
    sample_shape: tuple[int, int, int]
    splits: dict[str, tuple[str, ...]]
    sha256: dict[str, str] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    archive: str | None = None
    archive_md5: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    description: str = ""

    def files(self, split: str | None = None) -> tuple[str, ...]:
        """File names of one split, or of all splits."""
        if split is None:
            return tuple(f for names in self.splits.values() for f in names)
        return self.splits[split]

    def download_names(self) -> tuple[str, ...]:
        """What is fetched from a mirror: the archive, or every file gzip-compressed."""
        return (self.archive,) if self.archive else tuple(f"{f}.gz" for f in self.files())


MNIST = DatasetSpec(
    name="mnist",
    kind="idx",
    class_names=DIGITS,
    sample_shape=(1, 28, 28),
    splits=_IDX_FILES,
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://storage.googleapis.com/cvdf-datasets/mnist",
    ),
    sizes={"train": 60_000, "test": 10_000},
    description="MNIST handwritten digits (LeCun, Cortes, Burges), 28x28 gray",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    kind="idx",
    class_names=FASHION_CLASSES,
    sample_shape=(1, 28, 28),
    splits=_IDX_FILES,
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ),
    sizes={"train": 60_000, "test": 10_000},
    description="Fashion-MNIST (Zalando Research), 28x28 gray clothing",
)

CIFAR10 = DatasetSpec(
    name="cifar10",
    kind="cifar",
    class_names=CIFAR10_CLASSES,
    sample_shape=(3, 32, 32),
    splits={
        "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test": ("test_batch.bin",),
    },
    mirrors=("https://www.cs.toronto.edu/~kriz",),
    archive="cifar-10-binary.tar.gz",
    archive_md5="c32a1d4ab5d03f1284b67883e8d87530",
    sizes={"train": 50_000, "test": 10_000},
    description="CIFAR-10 (Krizhevsky), 32x32 colour, binary version",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST, CIFAR10)}

#: Prefix of the names that load a user's own image folders: ``folder:PATH``.
FOLDER_PREFIX = "folder:"


def get_spec(name: str) -> DatasetSpec:
    """The spec of a named dataset, or a :class:`DataError` listing the known names."""
    key = name.strip().lower()
    if key in DATASETS:
        return DATASETS[key]
    known = ", ".join([*DATASETS, f"{FOLDER_PREFIX}PATH"])
    raise DataError(f"unknown dataset {name!r}; expected one of: {known}")


def check_split(spec: DatasetSpec, split: str) -> None:
    if split not in spec.splits:
        raise DataError(f"dataset {spec.name!r} has no split {split!r}; expected one of {sorted(spec.splits)}")
