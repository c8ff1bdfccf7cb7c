"""Where datasets live on disk: one module owns the rules.

Order of precedence for the data folder (the place downloads go):

1. the ``data_dir`` argument (the CLI's ``--data-dir``),
2. the ``CNNLAB_DATA`` environment variable,
3. the user cache folder: ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``.

Inside it each dataset has its own sub-folder named like the dataset: ``<dir>/mnist/``,
``<dir>/fashion-mnist/``, ``<dir>/cifar10/``. Read-only system copies are searched after it
(Debian's ``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist/*.gz``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CNNLAB_DATA"

#: Read-only folders searched after the data folder, by dataset name.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cnnlab`` (when set and absolute, as the XDG spec asks) or ``~/.cache/cnnlab``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnnlab"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$CNNLAB_DATA``, else :func:`user_cache_dir`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV, "")
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def dataset_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders where dataset ``name`` may be found, best first: ``<root>/<name>``, then system copies."""
    return [data_root(data_dir) / name, *SYSTEM_DIRS.get(name, ())]


def find_file(folder: Path, filename: str, prefer_gz: bool = False) -> Path | None:
    """``folder/filename``, accepting either the raw name or the name with ``.gz``.

    The raw file is preferred, unless ``prefer_gz``: for datasets whose only published digests are those
    of the ``.gz`` files, the ``.gz`` is the copy that can be verified.
    """
    names = (f"{filename}.gz", filename) if prefer_gz else (filename, f"{filename}.gz")
    for candidate in (folder / n for n in names):
        if candidate.is_file():
            return candidate
    return None
