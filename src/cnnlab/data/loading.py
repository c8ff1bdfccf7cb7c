"""``load_dataset(name, split)``: find the files, download them if missing, verify, decode.

The search order for a named dataset is ``<data folder>/<name>/`` (see :mod:`cnnlab.data.paths`), then
system copies such as ``/usr/share/datasets/fashion-mnist``, then what torchvision or Keras already
downloaded (:mod:`cnnlab.data.elsewhere`). A file whose payload does not match its SHA-256 is never
returned as data: in the data folder it is reported and replaced by a fresh download, elsewhere (a
read-only or another library's copy) it is an error.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..engine.errors import DataError
from . import cifar, elsewhere, verify
from .dataset import Dataset
from .download import fetch, mirror_urls, missing_files_message
from .idx import check_pair, decode_payload, parse_idx, read_payload, read_raw
from .idx_zip import read_member_payload
from .paths import data_root, dataset_dirs, find_file
from .registry import FOLDER_PREFIX, DatasetSpec, check_split, get_spec

SUMS_NAME = "SHA256SUMS"


# -- finding files ---------------------------------------------------------------------------------

def locate(spec: DatasetSpec, split: str, data_dir=None) -> Path | None:
    """Where ``split`` can be read from: the first folder holding all its files (for CIFAR-10: the folder
    of the ``.bin`` files; for EMNIST: the folder of ``gzip.zip``, or of the loose IDX files), else
    Keras' ``.npz`` file, else None."""
    gz_first = not spec.sha256
    for folder in [*dataset_dirs(spec.folder, data_dir), *elsewhere.foreign_dirs(spec, data_dir)]:
        if spec.kind == "cifar":
            found = cifar.find_batch_folder(folder, spec.files(split))
            if found is not None:
                return found
        elif spec.kind == "idx-zip" and (folder / spec.archive).is_file():
            return folder
        elif all(find_file(folder, f, gz_first) is not None for f in spec.files(split)):
            return folder
    return elsewhere.keras_npz(spec)


# -- reading and verifying -------------------------------------------------------------------------

def _read_idx_file(spec: DatasetSpec, where: Path, fname: str, check: bool) -> tuple[np.ndarray, str, bool]:
    """One IDX file of ``spec`` from folder ``where``: ``(array, name for messages, verified)``.

    Verified against the payload digest when the registry has one, else against the published digest
    of the compressed file (the ``.gz``, or EMNIST's whole archive); a gunzipped copy of a file whose
    only digest is that of its ``.gz`` loads unverified.
    """
    archive = where / spec.archive if spec.kind == "idx-zip" else None
    if archive is not None and archive.is_file():
        if check:
            verify.verify_file(archive, spec.download_sha256[spec.archive])
        member = f"{spec.member_prefix}{fname}.gz"
        return parse_idx(read_member_payload(archive, member), f"{archive}:{member}"), f"{archive}:{member}", check
    path = find_file(where, fname, prefer_gz=not spec.sha256)
    raw = read_raw(path)
    payload = decode_payload(raw, path)
    verified = False
    if check and fname in spec.sha256:
        verify.verify_payload(path, payload, spec.sha256[fname])
        verified = True
    elif check and path.name in spec.download_sha256:
        verify.verify_payload(path, raw, spec.download_sha256[path.name])
        verified = True
    return parse_idx(payload, path), str(path), verified


def _read_idx_split(spec: DatasetSpec, split: str, where: Path, check: bool) -> Dataset:
    """The split, checked; a checksum mismatch says first what is structurally wrong, when something is
    ("label 200 out of range", "counts differ"), so the user learns more than "not the expected bytes"."""
    try:
        return _read_idx_split_checked(spec, split, where, check)
    except verify.ChecksumError as exc:
        if exc.diagnosis is not None or not check:
            raise
        try:
            _read_idx_split_checked(spec, split, where, False)  # the same reading, without the digests
        except DataError as structural:
            raise verify.ChecksumError(exc.path, exc.expected, exc.actual, _without_path(structural, exc.path)) from None
        raise


def _without_path(error: Exception, path: Path) -> str:
    """An error's message without a leading ``"<path>: "`` (the checksum message names the file already)."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _read_idx_split_checked(spec: DatasetSpec, split: str, where: Path, check: bool) -> Dataset:
    if where.suffix == ".npz":
        return elsewhere.read_keras_npz(spec, split, where, check)
    images_name, labels_name = spec.files(split)
    images, images_src, images_ok = _read_idx_file(spec, where, images_name, check)
    labels, labels_src, labels_ok = _read_idx_file(spec, where, labels_name, check)
    if spec.label_column is not None:  # QMNIST: a table of label fields, one row per image
        if labels.ndim != 2 or labels.shape[1] <= spec.label_column:
            raise DataError(f"{labels_src}: expected a label table (N, K) with K > {spec.label_column}, "
                            f"got shape {labels.shape}")
        labels = labels[:, spec.label_column]
    check_pair(images, labels, len(spec.class_names), images_src, labels_src, spec.first_label)
    if images.shape[1:] != spec.sample_shape[1:]:
        raise DataError(f"{images_src}: expected images of {spec.sample_shape[1:]}, got {images.shape[1:]}")
    if spec.transposed:  # EMNIST: stored column by column; a copy, so the rows are contiguous again
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    return Dataset(
        images=images[:, None],  # add the channel axis: (N, 28, 28) -> (N, 1, 28, 28), a view
        labels=labels.astype(np.int64) - spec.first_label,
        class_names=spec.class_names,
        name=spec.name,
        split=split,
        source=where,
        verified=images_ok and labels_ok,
    )


def _read_cifar_split(spec: DatasetSpec, split: str, folder: Path, check: bool) -> Dataset:
    sums = verify.read_sums(folder / SUMS_NAME) if check else {}
    parts = []
    for fname in spec.files(split):
        path = folder / fname
        payload = path.read_bytes()
        if fname in sums:
            verify.verify_payload(path, payload, sums[fname])
        parts.append(cifar.parse_cifar_batch(payload, path, len(spec.class_names)))
    return Dataset(
        images=np.concatenate([p[0] for p in parts]),
        labels=np.concatenate([p[1] for p in parts]),
        class_names=spec.class_names,
        name=spec.name,
        split=split,
        source=folder,
        verified=check and all(f in sums for f in spec.files(split)),
    )


def _is_writable_cache(spec: DatasetSpec, path: Path, data_dir) -> bool:
    """Files we may delete and download again: those inside ``<data folder>/<name>/``."""
    own = (data_root(data_dir) / spec.folder).resolve()
    return own in path.resolve().parents and os.access(path.parent, os.W_OK)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirror: str | Sequence[str] | None = None,
    progress: bool = True,
    verify_checksums: bool = True,
    mode: str = "auto",
    image_size: tuple[int, int] | int | None = None,
) -> Dataset:
    """Load a dataset by name (``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``, ``"qmnist"``,
    ``"emnist-digits"``, ``"emnist-letters"``, ``"cifar10"``) or ``"folder:PATH"``.

    Returns a :class:`Dataset` with uint8 images ``(N, C, H, W)`` (MNIST: ``(N, 1, 28, 28)``; CIFAR-10:
    ``(N, 3, 32, 32)``) and int64 labels ``(N,)`` counted from 0. A missing dataset is downloaded when ``download``
    (from ``mirror`` / ``$CNNLAB_MIRROR`` / the public mirrors). ``mode`` and ``image_size`` only apply to
    folders (see :func:`cnnlab.data.folder.load_image_folder`).
    """
    if name.startswith(FOLDER_PREFIX):
        from .folder import load_image_folder

        return load_image_folder(name[len(FOLDER_PREFIX):], split, mode=mode, size=image_size)
    spec = get_spec(name)
    check_split(spec, split)
    reader = _read_cifar_split if spec.kind == "cifar" else _read_idx_split
    folder = locate(spec, split, data_dir)
    if folder is None:
        if not download:
            raise DataError(missing_files_message(spec, data_root(data_dir) / spec.folder, "download disabled"))
        download_dataset(spec.name, data_dir, mirror=mirror, progress=progress)
        folder = locate(spec, split, data_dir)
    try:
        return reader(spec, split, folder, verify_checksums)
    except verify.ChecksumError as exc:
        if not (download and _is_writable_cache(spec, exc.path, data_dir)):
            raise
        download_dataset(spec.name, data_dir, mirror=mirror, progress=progress)  # reports it, sets it aside
        return reader(spec, split, locate(spec, split, data_dir), verify_checksums)


# -- downloading -----------------------------------------------------------------------------------

def _check_idx(fname: str, expected: str):
    def check(tmp: Path) -> None:
        actual = verify.sha256_hex(read_payload(tmp))
        if actual != expected:
            raise verify.ChecksumError(Path(fname), expected, actual)

    return check


def _check_md5(fname: str, expected: str):
    def check(tmp: Path) -> None:
        actual = verify.md5_file(tmp)
        if actual != expected:
            raise DataError(f"{fname}: checksum mismatch: MD5 {actual}, expected {expected}")

    return check


def _check_published(spec: DatasetSpec, name: str):
    """A check of downloaded file ``name`` against the digests published for it: SHA-256, then MD5."""
    sha = spec.download_sha256.get(name)
    md5 = spec.download_md5.get(name) or (spec.archive_md5 if name == spec.archive else None)
    if sha is None and md5 is None:
        raise DataError(f"dataset {spec.name!r}: no published digest for {name}; refusing an unverifiable download")

    def check(tmp: Path) -> None:
        if sha is not None and (actual := verify.sha256_file(tmp)) != sha:
            raise verify.ChecksumError(Path(name), sha, actual)
        if md5 is not None:
            _check_md5(name, md5)(tmp)

    return check


def _existing_is_good(spec: DatasetSpec, path: Path) -> bool:
    """Whether a file already in the data folder is the right one; a wrong one is reported (and kept:
    :func:`fetch` sets it aside once a verified copy has arrived). A gunzipped copy of a file whose only
    published digest is that of its ``.gz`` cannot be checked: it is kept (and loads unverified)."""
    fname = path.name.removesuffix(".gz")
    if fname in spec.sha256:
        expected, verify_it = spec.sha256[fname], lambda: verify.verify_payload(path, read_payload(path), expected)
    elif path.name in spec.download_sha256:
        expected, verify_it = spec.download_sha256[path.name], lambda: verify.verify_file(path, expected)
    else:
        return True
    try:
        verify_it()
        return True
    except verify.ChecksumError as exc:
        verify.warn_corrupt(path, f"SHA-256 {exc.actual[:16]}..., expected {expected[:16]}...")
    except DataError as exc:  # e.g. a damaged gzip stream
        verify.warn_corrupt(path, str(exc).removeprefix(f"{path}: "))
    return False


def download_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    mirror: str | Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Make sure every file of dataset ``name`` is in ``<data folder>/<name>/`` and verified.

    (EMNIST: ``<data folder>/emnist/gzip.zip``, shared by its subsets, kept whole.) Files already there
    and correct are kept; corrupt ones are reported and replaced. Returns the folder.
    Raises :class:`DataError` saying which files to fetch and where to put them when no mirror works.
    """
    spec = get_spec(name)
    target = data_root(data_dir) / spec.folder
    urls = mirror_urls(spec, mirror)
    try:
        if spec.kind == "cifar":
            _download_archive(spec, target, urls, progress, timeout)
        elif spec.kind == "idx-zip":
            archive = target / spec.archive
            existing = archive if archive.is_file() else None
            if existing is None or not _existing_is_good(spec, existing):
                fetch([f"{u}/{spec.archive}" for u in urls], archive, _check_published(spec, spec.archive),
                      progress=progress, timeout=timeout, replaces=existing)
        else:
            for fname in spec.files():
                existing = find_file(target, fname, prefer_gz=not spec.sha256)
                if existing is not None and _existing_is_good(spec, existing):
                    continue
                check = (_check_idx(fname, spec.sha256[fname]) if fname in spec.sha256
                         else _check_published(spec, f"{fname}.gz"))
                fetch([f"{u}/{fname}.gz" for u in urls], target / f"{fname}.gz", check, progress=progress,
                      timeout=timeout, replaces=existing)
    except DataError as exc:
        raise DataError(missing_files_message(spec, target, str(exc))) from exc
    except OSError as exc:  # e.g. a read-only data folder
        raise DataError(f"cannot write dataset {spec.name!r} into {target}: {exc}") from exc
    return target


def _download_archive(spec: DatasetSpec, target: Path, urls, progress: bool, timeout: float) -> None:
    """CIFAR-10: fetch (or reuse a hand-placed) archive, check its MD5, extract, record SHA256SUMS."""
    from ..atomic import write_text

    found = cifar.find_batch_folder(target, spec.files())
    if found is not None and (found / SUMS_NAME).is_file():
        return
    archive = target / spec.archive
    check = _check_md5(spec.archive, spec.archive_md5)
    hand_placed = archive.is_file()
    good = False
    if hand_placed:
        try:
            check(archive)
            good = True
        except DataError as exc:
            verify.warn_corrupt(archive, str(exc).removeprefix(f"{spec.archive}: "))
    if not good:
        fetch([f"{u}/{spec.archive}" for u in urls], archive, check, progress=progress, timeout=timeout,
              replaces=archive if hand_placed else None)
    out = cifar.extract_batches(archive, target, spec.files())
    sums = [f"{verify.sha256_hex((out / f).read_bytes())}  {f}" for f in spec.files()]
    write_text(out / SUMS_NAME, "\n".join(sums) + "\n")
    if not (hand_placed and good):  # our own download: the .bin files and their digests are what we keep
        with contextlib.suppress(OSError):
            archive.unlink()
