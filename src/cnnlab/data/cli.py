"""``cnnlab data ...``: see what datasets are where, fetch one, look at augmented samples.

The group is registered in :mod:`cnnlab.cli` (``cli.add_command(data)``). Heavy work is imported inside the
commands so ``cnnlab --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_types import Finite

DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab).",
)


@click.group("data")
def data() -> None:
    """Datasets: where they are, download them, preview augmentation."""


def _describe_split(ds) -> list[str]:
    counts = ds.class_counts()
    per_class = ", ".join(f"{name}: {int(n)}" for name, n in zip(ds.class_names, counts))
    return [
        f"  {ds.split:<5} {len(ds):>6} images {ds.images.dtype} {tuple(ds.images.shape)}, "
        f"labels {ds.labels.dtype} {tuple(ds.labels.shape)}",
        f"        classes ({ds.num_classes}): {per_class}",
    ]


def _info_lines(name: str, data_dir) -> tuple[list[str], bool]:
    """The report of one dataset, and whether it is sound (absent counts as sound, unreadable does not)."""
    from ..engine.errors import DataError
    from .elsewhere import foreign_dirs, keras_datasets_dir
    from .loading import load_dataset, locate
    from .paths import dataset_dirs
    from .registry import FOLDER_PREFIX, get_spec

    if name.startswith(FOLDER_PREFIX):
        where = name[len(FOLDER_PREFIX):]
        if not Path(where).is_dir():
            return [f"{name}: no such folder {where!r}"], False
        # a folder without train/ and test/ sub-folders is one split, "train" (all its images)
        splits = ["train", "test"] if (Path(where) / "test").is_dir() else ["train"]
    else:
        spec = get_spec(name)
        splits = list(spec.splits)
        found = [locate(spec, s, data_dir) for s in splits]
        if all(f is None for f in found):
            places = [*dataset_dirs(spec.folder, data_dir), *foreign_dirs(spec, data_dir)]
            if spec.keras_npz:
                places.append(keras_datasets_dir() / spec.keras_npz[0])
            looked = ", ".join(str(d) for d in places)
            return [f"{spec.name}: not found (looked in {looked}); get it with `cnnlab data download {spec.name}`"], True
        where = ", ".join(sorted({str(f) for f in found if f is not None}))
    loaded, problems = [], []
    for split in splits:
        try:
            loaded.append(load_dataset(name, split, data_dir, download=False, progress=False))
        except DataError as exc:
            problems.append(f"  {split:<5} unavailable: {str(exc).splitlines()[0]}")
    if not loaded:
        return [f"{name}: found in {where}, but unreadable", *problems], False
    if problems:  # one bad split makes the dataset unusable as a whole: never "verified"
        status = f"CORRUPT OR INCOMPLETE ({len(problems)} of {len(splits)} splits unreadable)"
    else:
        status = "verified (SHA-256)" if all(d.verified for d in loaded) else "NOT verified"
    lines = [f"{loaded[0].name}: found in {where}, {status}"]
    for ds in loaded:
        lines += _describe_split(ds)
    return lines + problems, not problems


@data.command("info")
@click.argument("name", required=False)
@DATA_DIR_OPTION
def info(name: str | None, data_dir: str | None) -> None:
    """Where each dataset was found, verified or not, sizes, shapes and class counts.

    NAME is mnist, fashion-mnist, kmnist, qmnist, emnist-digits, emnist-letters, cifar10 or folder:PATH
    (default: every named dataset).
    """
    from .registry import DATASETS

    sound = True
    for i, dataset_name in enumerate([name] if name else list(DATASETS)):
        if i:
            click.echo("")
        lines, ok = _info_lines(dataset_name, data_dir)
        sound &= ok
        for line in lines:
            click.echo(line)
    if not sound:  # scripts can tell: exit 1 when a dataset that is there cannot be used
        raise SystemExit(1)


@data.command("download")
@click.argument("name")
@DATA_DIR_OPTION
@click.option("--mirror", default=None, help="Base URL(s) to fetch <base>/<name>/<file> from (comma-separated).")
def download(name: str, data_dir: str | None, mirror: str | None) -> None:
    """Download dataset NAME into the data folder and verify it.

    NAME: mnist, fashion-mnist, kmnist, qmnist, emnist-digits, emnist-letters (one 562 MB archive shared by
    both EMNIST subsets), cifar10.
    """
    from .loading import download_dataset

    folder = download_dataset(name, data_dir, mirror=mirror)
    click.echo(f"{name}: ready in {folder}")
    for line in _info_lines(name, data_dir)[0][1:]:
        click.echo(line)


@data.command("augment-grid")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--dataset", "name", default="mnist", show_default=True, help="Dataset to take images from.")
@click.option("--split", default="train", show_default=True)
@DATA_DIR_OPTION
@click.option("--count", default=8, show_default=True, type=click.IntRange(1, 1000), help="Images (rows).")
@click.option("--copies", default=7, show_default=True, type=click.IntRange(1, 100),
              help="Augmented versions per image (columns).")
@click.option("--rotation", default=15.0, show_default=True, type=Finite(0, 180), help="Max rotation, degrees.")
@click.option("--shift", default=2.0, show_default=True, type=Finite(0, 100), help="Max shift, pixels.")
@click.option("--scale", default=0.1, show_default=True, type=Finite(0, 0.9), help="Max relative zoom.")
@click.option("--elastic-alpha", default=0.0, show_default=True, type=Finite(0, 1000),
              help="Elastic strength, pixels (Simard: 34).")
@click.option("--elastic-sigma", default=4.0, show_default=True, type=Finite(0, 100, open_low=True),
              help="Elastic smoothness, pixels.")
@click.option("--noise", default=0.0, show_default=True, type=Finite(0, 1),
              help="Gaussian pixel noise (std, in [0, 1] units).")
@click.option("--seed", default=0, show_default=True)
def augment_grid(output, name, split, data_dir, count, copies, rotation, shift, scale, elastic_alpha,
                 elastic_sigma, noise, seed) -> None:
    """Save a PNG grid to OUTPUT: each row one image, then augmented copies of it."""
    from .augment import Augmentation, save_augmentation_grid
    from .loading import load_dataset
    from .splits import first_n

    ds = first_n(load_dataset(name, split, data_dir), count)
    aug = Augmentation(rotation=rotation, shift=shift, scale=scale, elastic_alpha=elastic_alpha,
                       elastic_sigma=elastic_sigma, noise=noise, seed=seed)
    save_augmentation_grid(ds.images, output, aug, copies=copies, seed=seed)
    click.echo(f"wrote {output}: {len(ds)} images x (1 original + {copies} augmented)")
