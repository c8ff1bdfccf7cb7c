"""A user's own images, one sub-folder per class (the ImageFolder convention)::

    my-digits/                 or      my-digits/train/<class>/...   and   my-digits/test/<class>/...
      0/  a.png b.jpg ...
      1/  ...

Class names are the sub-folder names, sorted (so ``"0"``..``"9"`` get labels 0..9). Images may have any
size and format Pillow reads. Three ways to turn them into arrays:

* ``"digit"``: the same preprocessing as the digit recogniser (:func:`cnnlab.recognition.preprocess.prepare_digit`:
  gray, light ink on dark, cropped, centred by mass in 28x28) -> ``(N, 1, 28, 28)``. Use it for handwritten
  digits so they look like MNIST to the network.
* ``"gray"``: plain grayscale, resized -> ``(N, 1, H, W)`` (default 28x28).
* ``"rgb"``: colour, resized with Pillow -> ``(N, 3, H, W)`` (default 32x32, CIFAR-10's size).
* ``"auto"`` (default): what most pictures are — ``"digit"`` when at least half are grayscale, else
  ``"rgb"`` — and the dataset's ``notes`` say what was chosen and which pictures were converted. (One
  colour picture among grey digits used to switch the whole set to RGB 32x32, with 0 % validation
  accuracy after; the majority decides now, and ``mode=`` / ``--folder-mode`` overrides it.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..engine.errors import DataError
from .dataset import Dataset

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
MODES = ("auto", "digit", "gray", "rgb")
GRAY_PIL_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
DEFAULT_SIZES = {"digit": (28, 28), "gray": (28, 28), "rgb": (32, 32)}


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` (hidden ones skipped), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def split_root(root: Path, split: str) -> Path:
    """``root/<split>`` when the folder has ``train/`` and ``test/``; the folder itself for ``"train"``."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        if split not in ("train", "test"):
            raise DataError(f"{root}: split must be 'train' or 'test', got {split!r}")
        return root / split
    if split != "train":
        raise DataError(
            f"{root} has no train/ and test/ sub-folders, so only split 'train' (all images) exists, "
            f"got {split!r}; make a validation set with cnnlab.data.splits.train_val_split"
        )
    return root


def _open(path: Path, header_only: bool = False):
    """Open a picture with Pillow (fully decoded unless ``header_only``); the caller closes it.

    The size in the header is checked first, as :func:`cnnlab.recognition.preprocess.load_image` does, so a small file
    claiming 100,000 x 100,000 pixels (a decompression bomb) is refused before any pixel is decoded.
    Unreadable or too large -> :class:`DataError` naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    from ..recognition.preprocess import ImageError, check_dimensions

    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own, larger limit, checked in open()
        raise DataError(f"{path}: image refused as a decompression bomb ({exc})") from exc
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    try:
        check_dimensions(image.size)
        if not header_only:
            image.load()
    except ImageError as exc:
        image.close()
        raise DataError(f"{path}: {exc}") from exc
    except (OSError, Image.DecompressionBombError) as exc:
        image.close()
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    return image


def has_test_split(root: str | os.PathLike) -> bool:
    """Whether the folder has ``train/`` and ``test/`` (else it is one training split, all its images)."""
    root = Path(root).expanduser()
    return (root / "train").is_dir() and (root / "test").is_dir()


def split_classes(root: str | os.PathLike, split: str) -> list[str]:
    """The class names of one split of the folder (its sub-folder names, sorted); cheap, no picture read."""
    return [p.name for p in class_folders(split_root(Path(root).expanduser(), split))]


def choose_mode(files: list[Path]) -> tuple[str, str]:
    """``("digit" or "rgb", a sentence saying why)`` from the pictures' headers: the majority decides."""
    colour = [f for f in files if _peek_mode(f) not in GRAY_PIL_MODES]
    n_gray = len(files) - len(colour)
    if n_gray >= len(colour):
        mode = "digit"
        why = f"{n_gray} of {len(files)} pictures are grayscale: digit mode (gray 28x28, as MNIST)"
        if colour:
            shown = ", ".join(f.name for f in colour[:3]) + (", ..." if len(colour) > 3 else "")
            why += f"; {len(colour)} colour picture{'s' if len(colour) > 1 else ''} converted to gray ({shown})"
    else:
        mode = "rgb"
        why = f"{len(colour)} of {len(files)} pictures are in colour: rgb mode (32x32 colour, as CIFAR-10)"
        if n_gray:
            why += f"; {n_gray} grayscale picture{'s' if n_gray > 1 else ''} repeated on 3 channels"
    return mode, why + " (choose with --folder-mode digit|gray|rgb)"


def _peek_mode(path: Path) -> str:
    with _open(path, header_only=True) as image:
        return image.mode


def _convert(image, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One picture -> uint8 ``(C, H, W)``."""
    from PIL import Image

    if mode == "digit":
        from ..recognition.preprocess import prepare_digit  # lazy: the digit pipeline is its own module

        # the classes are whatever the folder holds (a dash, a letter): no "is it one digit?" checks
        digit = np.asarray(prepare_digit(image, check=False), dtype=np.float32)
        return np.rint(np.clip(digit, 0.0, 1.0) * 255.0).astype(np.uint8)[None]
    height, width = size
    if mode == "gray":
        return np.asarray(image.convert("L").resize((width, height), Image.BILINEAR), dtype=np.uint8)[None]
    rgb = image.convert("RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _convert_file(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from ..engine.errors import CnnlabError

    try:
        with _open(path) as image:
            return _convert(image, mode, size)
    except DataError:
        raise
    except CnnlabError as exc:  # e.g. the digit pipeline finds no ink on a blank page
        raise DataError(f"{path}: {exc}") from exc


def load_image_folder(
    path: str | os.PathLike,
    split: str = "train",
    mode: str = "auto",
    size: tuple[int, int] | int | None = None,
) -> Dataset:
    """Load ``path`` (one sub-folder per class) as a :class:`Dataset` of uint8 ``(N, C, H, W)`` images.

    ``size`` is ``(H, W)`` or one int for a square; it does not apply to ``"digit"`` (always 28x28).
    """
    root = Path(path).expanduser()
    if mode not in MODES:
        raise DataError(f"unknown folder mode {mode!r}; expected one of {MODES}")
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (expected one sub-folder per class)")
    base = split_root(root, split)
    classes = class_folders(base)
    if not classes:
        raise DataError(f"{base}: no class sub-folders; expected one sub-folder per class holding its images")
    files: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(classes):
        found = image_files(folder)
        if not found:
            raise DataError(f"{folder}: class {folder.name!r} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += found
        labels += [label] * len(found)
    notes: tuple[str, ...] = ()
    if mode == "auto":  # headers only: the pixel data is decoded once, below
        mode, why = choose_mode(files)
        notes = (why,)
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size) if size is not None else DEFAULT_SIZES[mode]
    # One file at a time (decoding is per file by nature); the pixels themselves are never looped over.
    arrays = [_convert_file(f, mode, size) for f in files]
    return Dataset(
        images=np.stack(arrays),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(c.name for c in classes),
        name=f"folder:{root}",
        split=split,
        source=base,
        verified=False,
        mode=mode,
        notes=notes,
    )
