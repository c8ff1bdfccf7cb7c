"""Grid files: a base training config and what to vary, turned into a list of :class:`Trial`.

A grid is a TOML or YAML file (or the name of a built-in grid such as ``lab``, shipped in
``cnnlab/studies/grids/``)::

    description = "optimizer x activation x learning rate for LeNet-5 on MNIST"

    [base]                    # any TrainConfig option (or base = "lenet5.toml", a config file)
    arch = "lenet5"
    epochs = 10

    [axes]                    # the cartesian product of these lists...
    optimizer = ["adam", "sgd"]
    activation = ["tanh", "relu"]
    lr = [0.01, 0.001]

    [[variants]]              # ...plus these explicit trials (each one a table of options)
    optimizer = "sgd"
    activation = "tanh"
    lr = 0.0001

Any :class:`~cnnlab.training.config.TrainConfig` option can be an axis (``pooling``, ``batch_size``, ``lambda``,
``augment``, ...). Options held in a table are reached with a dot: ``"arch_options.conv_layers" = [2, 4,
6]`` varies ``vgg-mini``'s depth. Every value is checked when the grid is read, so a typo fails before
hours of training, not in the middle of them.

Each trial gets a stable name made of its own parameters (``optimizer=adam_activation=tanh_lr=0.01``):
the sweep's run folders are named after them, which is what lets an interrupted sweep find its trials
again.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..training.config import _ALIASES, TrainConfig, read_config_file
from ..engine.errors import ConfigError

GRID_KEYS = ("description", "base", "axes", "variants")
#: Options the sweep sets itself for every trial (its run folder), so a grid may not vary them.
RESERVED = ("out", "name")
GRIDS_DIR = Path(__file__).resolve().parent / "grids"


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep or a study.

    ``params`` holds only what makes this trial different from the base (``{"optimizer": "adam",
    "lr": 0.01}``); ``config`` is the complete configuration (its ``out`` and ``name`` are set when the
    sweep runs it).
    """

    name: str
    params: dict
    config: TrainConfig
    label: str = ""

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", ", ".join(f"{_short(k)}={_text(v)}" for k, v in self.params.items()))


@dataclass
class Grid:
    """What a grid file describes: a base config, axes (cartesian product) and explicit variants."""

    base: dict
    axes: dict = field(default_factory=dict)
    variants: list = field(default_factory=list)
    description: str = ""
    source: str = "grid"

    def trials(self, **overrides) -> list[Trial]:
        """Every trial: the product of the axes first (in file order), then the variants.

        ``overrides`` (``epochs=1``, ``train_subset=200``, ``**{"arch_options.dropout": 0.2}``) change the
        *base*: a trial's own parameters still win over them. Duplicate trials (a variant equal to a point
        of the product) run once.
        """
        base = base_config(self.base, overrides, f"{self.source}: [base]")
        points = [dict(zip(self.axes, values)) for values in itertools.product(*self.axes.values())] \
            if self.axes else []
        points += [dict(v) for v in self.variants]
        trials, seen = [], set()
        for params in points:
            key = json.dumps(params, sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            config = apply_params(base, params, f"{self.source}: trial {params}")
            trials.append(Trial(trial_name(params), params, config))
        if not trials:
            raise ConfigError(f"{self.source}: the grid has no trials; give [axes] with lists of values "
                              f"and/or [[variants]]")
        return _unique_names(trials)


# -- reading ------------------------------------------------------------------------------------------------
def builtin_grids() -> list[str]:
    """Names of the grids shipped with cnnlab (``lab``, ...)."""
    return sorted(p.stem for p in GRIDS_DIR.glob("*.toml"))


def load_grid(spec: str | os.PathLike) -> Grid:
    """A grid from a file path (``.toml``, ``.yaml``, ``.yml``) or the name of a built-in grid."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        if str(spec) not in builtin_grids():
            raise ConfigError(f"unknown grid {str(spec)!r}: expected a .toml/.yaml file or one of the built-in "
                              f"grids: {', '.join(builtin_grids())}")
        path = GRIDS_DIR / f"{spec}.toml"
    return parse_grid(read_config_file(path), str(path), base_dir=path.parent)


def parse_grid(data: dict, source: str = "grid", base_dir: str | os.PathLike | None = None) -> Grid:
    """Check and normalise the content of a grid file (see the module docstring for its shape)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table with {', '.join(GRID_KEYS)}, received {type(data).__name__}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown grid key(s) {unknown}; expected some of: {', '.join(GRID_KEYS)} "
                          f"(training options go under [base])")
    base = data.get("base", {})
    if isinstance(base, str):  # a config file, relative to the grid file
        path = Path(base)
        base = read_config_file(path if path.is_absolute() or base_dir is None else Path(base_dir) / path)
    if not isinstance(base, dict):
        raise ConfigError(f"{source}: [base] must be a table of training options or a config file name, "
                          f"received {base!r}")
    checked_base = _config(base, f"{source}: [base]")

    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise ConfigError(f"{source}: [axes] must be a table of option = [values], received {axes!r}")
    checked_axes = {}
    for key, values in axes.items():
        where = f"{source}: axis {key!r}"
        if not isinstance(values, list):
            raise ConfigError(f"{where}: expected a list of values like [0.1, 0.01], received {values!r}")
        if not values:
            raise ConfigError(f"{where} is empty: give at least one value")
        name = option_name(key, where)
        for value in values:
            apply_params(checked_base, {name: value}, where)
        checked_axes[name] = list(values)

    variants = data.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{source}: variants must be a list of tables ([[variants]]), received {variants!r}")
    checked_variants = []
    for i, variant in enumerate(variants):
        where = f"{source}: variants[{i}]"
        if not variant:
            raise ConfigError(f"{where} is empty: give the options that make this trial different")
        params = {option_name(k, where): v for k, v in variant.items()}
        apply_params(checked_base, params, where)
        checked_variants.append(params)
    if not checked_axes and not checked_variants:
        raise ConfigError(f"{source}: the grid has no trials; give [axes] with lists of values and/or [[variants]]")
    description = data.get("description", "")
    return Grid(base=dict(base), axes=checked_axes, variants=checked_variants, description=str(description),
                source=source)


# -- options -------------------------------------------------------------------------------------------------
_FIELDS = set(TrainConfig.__dataclass_fields__)
_DICT_FIELDS = {"arch_options", "augment_options", "monitors"}


def option_name(key: str, where: str = "grid") -> str:
    """The canonical name of an option: dashes -> underscores, aliases (``lambda``) -> field names.

    ``"arch_options.conv_layers"`` reaches into a table option. Unknown or reserved names raise
    :class:`ConfigError`.
    """
    head, dot, rest = str(key).partition(".")
    normalised = _alias(head)
    if normalised not in _FIELDS:
        raise ConfigError(f"{where}: unknown option {key!r}; expected a training option such as "
                          f"optimizer, lr, activation, pooling, batch_size, lambda, or "
                          f"arch_options.<name> (all: {', '.join(sorted(_FIELDS))})")
    if normalised in RESERVED:
        raise ConfigError(f"{where}: {key!r} is set by the sweep (one run folder per trial) and cannot be varied")
    if dot:
        if normalised not in _DICT_FIELDS:
            raise ConfigError(f"{where}: {key!r}: only {', '.join(sorted(_DICT_FIELDS))} hold named options "
                              f"reached with a dot, not {normalised!r}")
        return f"{normalised}.{rest.replace('-', '_')}"
    return normalised


def _alias(key: str) -> str:
    name = key.replace("-", "_")
    return _ALIASES.get(name, name)


def apply_params(config: TrainConfig, params: dict, where: str = "grid") -> TrainConfig:
    """``config`` with ``params`` applied; dotted names update one entry of a table option.

    Invalid values raise :class:`ConfigError` naming ``where`` (the grid file and the trial).
    """
    flat, tables = {}, {}
    for key, value in params.items():
        head, dot, rest = key.partition(".")
        if dot:
            tables.setdefault(head, copy.deepcopy(getattr(config, head)))[rest] = value
        else:
            flat[key] = value
    if any(v is None for v in flat.values()):
        raise ConfigError(f"{where}: a value is empty (null) in {params}")
    try:
        return config.replace(**flat, **tables)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # a value of the wrong kind for an option (a list for lr, ...)
        raise ConfigError(f"{where}: invalid value ({exc})") from None


def base_config(defaults: dict, overrides: dict | None = None, where: str = "config") -> TrainConfig:
    """A TrainConfig from ``defaults`` with ``overrides`` applied (dotted names allowed, ``None`` ignored)."""
    config = _config(defaults, where)
    overrides = {option_name(k, where): v for k, v in (overrides or {}).items() if v is not None}
    return apply_params(config, overrides, where) if overrides else config


def _config(options: dict, where: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(options, where)
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: invalid value ({exc})") from None


# -- names ---------------------------------------------------------------------------------------------------
def _short(key: str) -> str:
    """``arch_options.conv_layers`` -> ``conv_layers`` (names and legends stay short)."""
    return key.rpartition(".")[2]


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def trial_name(params: dict, max_length: int = 100) -> str:
    """A folder name made of the parameters: ``{"optimizer": "adam", "lr": 0.01}`` -> ``optimizer=adam_lr=0.01``.

    Characters other than letters, digits and ``.=+-`` become ``-``; a name longer than ``max_length``
    is cut and ends with a short hash of the parameters, so it stays unique and stable.
    """
    text = "_".join(f"{_short(k)}={_text(v)}" for k, v in params.items())
    text = re.sub(r"[^A-Za-z0-9.=+_-]+", "-", text).strip("-_") or "base"
    if len(text) > max_length:
        text = f"{text[:max_length - 9]}-{_digest(params)}"
    return text


def _digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _unique_names(trials: list[Trial]) -> list[Trial]:
    """Give trials whose names collide (after the character clean-up) a hash suffix each."""
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.name] = counts.get(t.name, 0) + 1
    return [t if counts[t.name] == 1 else Trial(f"{t.name}-{_digest(t.params)}", t.params, t.config, t.label)
            for t in trials]
