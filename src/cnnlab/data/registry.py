"""What cnnlab knows about each named dataset: files, digests, class names, mirrors.

Two kinds of digest:

* ``sha256`` — SHA-256 of the *uncompressed* payload (the IDX bytes inside the ``.gz``), so a
  re-compressed copy is accepted and a damaged one is not. MNIST and Fashion-MNIST have them; they match
  ``SHA256SUMS.uncompressed`` next to the shared copies of the datasets.
* ``download_sha256`` / ``download_md5`` — digests of the files *as published* (the ``.gz`` or ``.zip``).
  For KMNIST, QMNIST and EMNIST nobody publishes payload digests; the SHA-256 values are those listed by
  tensorflow-datasets (``tensorflow_datasets/url_checksums/{kmnist,qmnist,emnist}.txt``) and the MD5
  values those of torchvision (``torchvision/datasets/mnist.py``). Both are checked on download; the
  SHA-256 again on every load of the compressed file (a raw file the user gunzipped has no published
  digest: it loads with ``verified=False``).

CIFAR-10's authors publish only the MD5 of their archive; we check it on download and record the SHA-256
of the extracted ``.bin`` files in ``SHA256SUMS`` beside them, which later loads verify against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.errors import DataError

DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Kuzushiji-MNIST: ten cursive hiragana, romanised (お き す つ な は ま や れ を, ``kmnist_classmap.csv``).
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
#: EMNIST letters: 26 classes, upper and lower case of each letter merged (stored labels 1..26).
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, download and verify one named dataset.

    Attributes:
        name: registry name, also the sub-folder of the data folder unless ``storage`` says otherwise.
        kind: ``"idx"`` (one images + one labels file per split), ``"idx-zip"`` (the same, as gzip'd
            members of one zip archive that is kept whole: EMNIST) or ``"cifar"`` (binary batches).
        class_names: indexed by label.
        sample_shape: per-sample ``(C, H, W)``.
        splits: split -> file names (uncompressed names; ``.gz`` variants are accepted for IDX).
        sha256: uncompressed file name -> SHA-256 hex digest of its payload.
        download_sha256 / download_md5: download name (``NAME.gz``, ``gzip.zip``) -> digest of the file
            as published.
        mirrors: base URLs tried in order; a file is fetched from ``<base>/<download name>``.
        archive / archive_md5: the single archive to download instead of per-file downloads (CIFAR-10,
            EMNIST).
        sizes: split -> number of samples, for messages and ``data info``.
        storage: sub-folder of the data folder when several datasets share their files (``emnist``).
        member_prefix: folder of the IDX members inside ``archive`` (EMNIST: ``gzip/``).
        label_column: labels are a table ``(N, K)`` and this column is the class (QMNIST's column 0).
        first_label: the smallest stored label (EMNIST letters: 1); labels are shifted to start at 0.
        transposed: images are stored column by column (EMNIST): transposed back on loading.
        torchvision_folder: the folder torchvision downloads it to, ``<root>/<folder>/raw``.
        keras_folder / keras_npz: where Keras caches it under ``~/.keras/datasets``: a folder of the same
            files, or an ``.npz`` (name, SHA-256 of the file as Keras publishes it).
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
    download_sha256: dict[str, str] = field(default_factory=dict)
    download_md5: dict[str, str] = field(default_factory=dict)
    storage: str | None = None
    member_prefix: str = ""
    label_column: int | None = None
    first_label: int = 0
    transposed: bool = False
    torchvision_folder: str | None = None
    keras_folder: str | None = None
    keras_npz: tuple[str, str] | None = None

    @property
    def folder(self) -> str:
        """The sub-folder of the data folder (and of a mirror) that holds this dataset's files."""
        return self.storage or self.name

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
    torchvision_folder="MNIST",
    # keras.datasets.mnist.load_data(): the file hash is the one in Keras' own source (keras/src/datasets/mnist.py)
    keras_npz=("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
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
    torchvision_folder="FashionMNIST",
    keras_folder="fashion-mnist",
)

KMNIST = DatasetSpec(
    name="kmnist",
    kind="idx",
    class_names=KMNIST_CLASSES,
    sample_shape=(1, 28, 28),
    splits=_IDX_FILES,
    download_sha256={
        "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
        "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
        "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
        "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
    },
    download_md5={
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist",),
    sizes={"train": 60_000, "test": 10_000},
    description="Kuzushiji-MNIST (ROIS-DS CODH), 28x28 gray cursive hiragana",
    torchvision_folder="KMNIST",
)

QMNIST = DatasetSpec(
    name="qmnist",
    kind="idx",
    class_names=DIGITS,
    sample_shape=(1, 28, 28),
    # The labels are "idx2-int": int32 (N, 8) = class, NIST series, writer, digit index, NIST class,
    # global NIST index, duplicate flag, unused. The class is column 0. The test split is all 60,000
    # (its first 10,000 match MNIST's test set).
    splits={
        "train": ("qmnist-train-images-idx3-ubyte", "qmnist-train-labels-idx2-int"),
        "test": ("qmnist-test-images-idx3-ubyte", "qmnist-test-labels-idx2-int"),
    },
    download_sha256={
        "qmnist-train-images-idx3-ubyte.gz": "9e26a7bf1683614e065d7b76460ccd52807165b3f22561fb782bd9f38c52b51d",
        "qmnist-train-labels-idx2-int.gz": "2c05dc77f6b916b38e455e97ab129a42a444f3dbef09b278a366f82904e0dd9f",
        "qmnist-test-images-idx3-ubyte.gz": "43fc22bf7498b8fc98de98369d72f752d0deabc280a43a7bcc364ab19e57b375",
        "qmnist-test-labels-idx2-int.gz": "9fbcbe594c3766fdf4f0b15c5165dc0d1e57ac604e01422608bb72c906030d06",
    },
    download_md5={
        "qmnist-train-images-idx3-ubyte.gz": "ed72d4157d28c017586c42bc6afe6370",
        "qmnist-train-labels-idx2-int.gz": "0058f8dd561b90ffdd0f734c6a30e5e4",
        "qmnist-test-images-idx3-ubyte.gz": "1394631089c404de565df7b7aeaf9412",
        "qmnist-test-labels-idx2-int.gz": "5b5b05890a5e13444e108efe57b788aa",
    },
    mirrors=("https://raw.githubusercontent.com/facebookresearch/qmnist/master",),
    sizes={"train": 60_000, "test": 60_000},
    description="QMNIST (Yadav & Bottou), MNIST rebuilt from NIST, 28x28 gray, extended labels",
    label_column=0,
    torchvision_folder="QMNIST",
)


def _emnist(subset: str, class_names: tuple[str, ...], sizes: dict[str, int], first_label: int, about: str):
    """EMNIST ``subset`` ("digits", "letters"): IDX members ``gzip/emnist-<subset>-<split>-*.gz`` of ``gzip.zip``."""
    return DatasetSpec(
        name=f"emnist-{subset}",
        kind="idx-zip",
        class_names=class_names,
        sample_shape=(1, 28, 28),
        splits={split: (f"emnist-{subset}-{split}-images-idx3-ubyte", f"emnist-{subset}-{split}-labels-idx1-ubyte")
                for split in ("train", "test")},
        archive="gzip.zip",  # 562 MB, all six EMNIST subsets: downloaded once, shared, never extracted
        archive_md5="58c8d27c78d21e728a6bc7b3cc06412e",
        download_sha256={"gzip.zip": "fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e"},
        mirrors=("https://biometrics.nist.gov/cs_links/EMNIST", "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST"),
        sizes=sizes,
        description=f"EMNIST {subset} (Cohen et al., NIST SD 19), 28x28 gray, {about}",
        storage="emnist",
        member_prefix="gzip/",
        first_label=first_label,
        transposed=True,  # EMNIST stores each image column by column: transposed back to rows
        torchvision_folder="EMNIST",
    )


EMNIST_DIGITS = _emnist("digits", DIGITS, {"train": 240_000, "test": 40_000}, 0, "digits")
EMNIST_LETTERS = _emnist("letters", LETTERS, {"train": 124_800, "test": 20_800}, 1,
                         "letters a-z (upper and lower case merged)")

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

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (MNIST, FASHION_MNIST, KMNIST, QMNIST, EMNIST_DIGITS, EMNIST_LETTERS, CIFAR10)
}

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
