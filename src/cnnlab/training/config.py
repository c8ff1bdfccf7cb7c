"""Every option of a training run in one place: :class:`TrainConfig`.

A run is described by a flat set of options (architecture, data, optimisation, monitors, output). They
come from three layers, each overriding the one before:

1. the defaults below,
2. a config file (TOML or YAML, chosen by the extension), e.g. ``lenet5.toml``::

       arch = "lenet5"
       dataset = "mnist"
       epochs = 10
       optimizer = "adam"
       lr = 1e-3
       [monitors]
       train_accuracy = false

3. command-line options (``cnnlab train --config lenet5.toml --epochs 2``).

Keys may be written with dashes or underscores (``batch-size`` = ``batch_size``), and ``lambda`` (Nielsen's
L2 parameter, a Python keyword) is stored as ``lmbda``. Unknown keys are errors, so a typo never silently
trains with the default. The resolved config — with the weight decay actually used, the package versions
and the seed — is saved as ``config.json`` in the run folder so the run can be repeated.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.device import DEVICES
from ..engine.errors import ConfigError
from .callbacks import MONITORS


#: Learning rate used when none is given: Adam's usual 1e-3, and 0.1 for the SGD family.
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3}
DEFAULT_SGD_LR = 0.1

#: Options whose value is text (the optional ones may be left out: ``None``), and the yes/no switches.
TEXT_OPTIONS = ("arch", "dataset", "optimizer", "schedule", "loss", "out", "folder_mode")
OPTIONAL_TEXT_OPTIONS = ("activation", "pooling", "init", "data_dir", "name")
PATH_OPTIONS = ("out", "data_dir")  # a pathlib.Path is accepted and stored as text
SWITCH_OPTIONS = ("augment", "standardize", "nesterov", "full_train_eval", "progress", "test", "stop_when_stuck")


def check_run_name(name: str | None) -> None:
    """A run name is one folder inside ``--out``: ``"../../x"`` or ``"a/b"`` would write somewhere else."""
    if name is not None and (name in (".", "..") or Path(name).name != name or "\\" in name):
        raise ConfigError(f"run name must be a plain folder name (no '/', '\\' or '..'), received {name!r}")


@dataclass
class TrainConfig:
    """All the options of one training run (see the module docstring for how they are set).

    Architecture: ``arch`` is a preset name (``lenet5``, ``mlp:784-30-10``, ...), or ``layers`` lists the
    layers as in a model file (``[{"type": "Dense", "config": {"units": 10}}, ...]``). ``activation``,
    ``pooling`` and ``init`` are passed to the preset; ``arch_options`` holds any other preset option
    (``{"output": "softmax"}``, ``{"dropout": 0.25}``).

    Regularisation: ``lmbda`` is the classic L2 λ (converted to ``weight_decay = λ / n_train`` by
    :func:`cnnlab.engine.optim.classic_l2`); give it or ``weight_decay``, not both.

    Data: ``val_split`` is a fraction (< 1) or a count (≥ 1) of training images held out for validation, or
    ``"test"`` to validate on the test split after every epoch
    (0: none); ``train_subset`` keeps the first N remaining training images (the overfitting study).
    ``non_digits`` adds that many drawn marks that are not digits (letters, scribbles:
    :mod:`cnnlab.synthetic.non_digits`) as an extra class, "not a digit", 90% to the training images and
    10% to the validation images (digit datasets only).

    Output: a run folder ``out/name`` (default name ``<arch>-<dataset>-<date>-<time>``); ``test`` also
    measures the final model on the test split when training ends.
    """

    # architecture
    arch: str = "lenet5"
    layers: list | None = None
    activation: str | None = None
    pooling: str | None = None
    init: str | None = None
    arch_options: dict = field(default_factory=dict)
    # data
    dataset: str = "mnist"
    data_dir: str | None = None
    folder_mode: str = "auto"  # image folders only: auto (the majority), digit, gray or rgb
    val_split: float | str = 0.1
    train_subset: int | None = None
    non_digits: int = 0
    augment: bool = False
    augment_options: dict = field(default_factory=dict)
    standardize: bool = False
    # optimisation
    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool = False
    schedule: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    lmbda: float | None = None
    weight_decay: float | None = None
    loss: str = "crossentropy"
    seed: int = 0
    device: str = "cpu"
    # watching and keeping
    monitors: dict = field(default_factory=lambda: {m: True for m in MONITORS})
    full_train_eval: bool = False
    early_stop: int | None = None
    stop_when_stuck: bool = True  # the divergence guard's "stuck at chance" rule (False: train every epoch)
    progress: bool = True
    test: bool = True
    out: str = "runs"
    name: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the option, what was expected and what was received."""
        def positive_int(name, value, allow_none=False):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, received {value!r}")

        def number(name, value, low=0.0, allow_none=True):
            if value is None and allow_none:
                return
            # not (value >= low) also refuses NaN, for which every comparison is false; and no infinity
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low
                    or not math.isfinite(value)):
                shown = {"lmbda": "lambda"}.get(name, name)  # the option's name as the user types it
                raise ConfigError(f"{shown} must be a finite number >= {low}, received {value!r}")

        self._check_types()
        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        positive_int("step_size", self.step_size)
        positive_int("train_subset", self.train_subset, allow_none=True)
        if isinstance(self.non_digits, bool) or not isinstance(self.non_digits, int) or self.non_digits < 0:
            raise ConfigError(f"non_digits must be a count (0 or more), received {self.non_digits!r}")
        positive_int("early_stop", self.early_stop, allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, received {self.seed!r}")
        from ..data.folder import MODES

        if self.folder_mode not in MODES:
            raise ConfigError(f"folder_mode must be one of {', '.join(MODES)}, received {self.folder_mode!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, received {self.device!r}")
        if self.val_split != "test":
            number("val_split", self.val_split, allow_none=False)
        if isinstance(self.val_split, float) and self.val_split >= 1 and not self.val_split.is_integer():
            raise ConfigError(f"val_split must be a fraction < 1 or a whole count, received {self.val_split!r}")
        for name in ("lr", "momentum", "lmbda", "weight_decay", "gamma", "min_lr"):
            number(name, getattr(self, name))
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"lr must be > 0, received {self.lr!r}")
        if self.lmbda is not None and self.weight_decay is not None:
            raise ConfigError(f"give lambda (classic L2, {self.lmbda}) or weight_decay ({self.weight_decay}), not both")
        if not isinstance(self.monitors, dict) or set(self.monitors) - set(MONITORS):
            unknown = sorted(set(self.monitors) - set(MONITORS)) if isinstance(self.monitors, dict) else self.monitors
            raise ConfigError(f"unknown monitor(s) {unknown!r}; expected some of {', '.join(MONITORS)}")
        for m, on in self.monitors.items():
            if not isinstance(on, bool):
                raise ConfigError(f"monitors.{m} must be true or false, received {on!r}")
        self.monitors = {m: self.monitors.get(m, True) for m in MONITORS}
        if self.early_stop is not None and (not self.val_split or not self.monitors["val_accuracy"]):
            raise ConfigError(f"early_stop={self.early_stop} watches the validation accuracy, but "
                              + ("val_split is 0 (no validation set)" if not self.val_split
                                 else "the val_accuracy monitor is off"))
        for name in ("arch_options", "augment_options"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a table of options, received {getattr(self, name)!r}")
        if self.layers is not None and not isinstance(self.layers, list):
            raise ConfigError(f"layers must be a list of layer descriptions, received {type(self.layers).__name__}")
        self._check_names()
        check_run_name(self.name)  # before any data is read or any folder is made

    def _check_types(self) -> None:
        """Text options must be text and switches true/false: ``arch = 5`` or ``augment = "no"`` (a
        string, which Python would take as true) are errors, not surprises later on."""
        for name in TEXT_OPTIONS + OPTIONAL_TEXT_OPTIONS:
            value = getattr(self, name)
            if value is None and name in OPTIONAL_TEXT_OPTIONS:
                continue
            if name in PATH_OPTIONS and isinstance(value, os.PathLike):
                value = os.fspath(value)
                setattr(self, name, value)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string, received {value!r}")
        for name in SWITCH_OPTIONS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, received {value!r}")

    def _check_names(self) -> None:
        """Loss, optimizer, schedule, architecture and preset options are checked against their registries
        here, before any data is read or any run folder is made."""
        import inspect

        from .presets import PRESETS, parse_arch
        from ..engine.losses import LOSSES
        from ..engine.optim import OPTIMIZERS, SCHEDULES

        for name, registry, key in (("loss", LOSSES, self.loss.lower()),
                                    ("optimizer", OPTIMIZERS, self.optimizer.lower()),
                                    ("schedule", SCHEDULES, self.schedule)):
            if key not in registry:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; expected one of: {', '.join(registry)}")
        if self.layers is not None:  # an explicit layer list: ``arch`` only names the run
            return
        preset, _ = parse_arch(self.arch)
        if preset not in PRESETS:
            raise ConfigError(f"unknown architecture {self.arch!r}; expected one of: {', '.join(PRESETS)}")
        accepted = [p for p in inspect.signature(PRESETS[preset]).parameters
                    if p not in ("input_shape", "num_classes", "sizes")]
        unknown = sorted(set(self.arch_kwargs()) - set(accepted))
        if unknown:
            raise ConfigError(f"arch_options: the {preset} preset has no option {', '.join(map(repr, unknown))}; "
                              f"expected some of: {', '.join(accepted)}")

    # -- derived values -------------------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's usual default when it was not given."""
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_LR.get(self.optimizer.lower(), DEFAULT_SGD_LR)

    def arch_kwargs(self) -> dict:
        """Options passed to the architecture preset (``None`` values left out: the preset's default)."""
        named = {"activation": self.activation, "pooling": self.pooling, "init": self.init}
        return {**self.arch_options, **{k: v for k, v in named.items() if v is not None}}

    # -- conversions ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **overrides) -> "TrainConfig":
        """A copy with ``overrides`` applied (keys normalised like a config file's; ``None`` ignored)."""
        values = self.to_dict()
        values.update(_normalise({k: v for k, v in overrides.items() if v is not None}, "overrides"))
        return TrainConfig(**values)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        return cls(**_normalise(data, source))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        return cls.from_dict(read_config_file(path), str(path))


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_ALIASES = {"lambda": "lmbda", "l2": "lmbda", "batch": "batch_size", "architecture": "arch"}


def _normalise(data: dict, source: str) -> dict:
    """Dashes -> underscores, aliases -> field names; unknown keys raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of options, received {type(data).__name__}")
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = _ALIASES.get(name, name)
        if name not in _FIELDS:
            raise ConfigError(f"{source}: unknown option {key!r}; expected one of: {', '.join(sorted(_FIELDS))}")
        if name == "monitors" and isinstance(value, dict):
            value = {str(k).replace("-", "_"): v for k, v in value.items()}
        if name == "monitors" and isinstance(value, (list, tuple)):  # a list names the monitors kept on
            value = {m: m in {str(v).replace("-", "_") for v in value} for m in MONITORS}
        out[name] = value
    return out


def read_config_file(path: str | os.PathLike) -> dict:
    """Parse a ``.toml`` or ``.yaml``/``.yml`` file into a dict (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"{path}: config files must end in .toml, .yaml or .yml, "
                          f"received {suffix or 'no extension'!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: a config file must be UTF-8 text, received bytes that are not "
                          f"({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from None
        return data if data is not None else {}


def package_versions() -> dict:
    """Versions that matter for reproducing a run: Python, cnnlab, NumPy (and CuPy when present)."""
    import numpy

    from ..version import __version__

    versions = {"python": platform.python_version(), "cnnlab": __version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        versions["cupy"] = version("cupy-cuda12x")
    except Exception:
        pass
    return versions


def resolved(config: TrainConfig, **derived) -> dict:
    """What ``config.json`` holds: every option, the values derived from them, versions and platform."""
    return {
        "config": config.to_dict(),
        "resolved": {"learning_rate": config.learning_rate, "seed": config.seed, **derived},
        "versions": package_versions(),
        "platform": platform.platform(),
    }

