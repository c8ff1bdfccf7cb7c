"""Recipes: a training config turned into the objects that train — data, model, optimizer, schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.errors import ConfigError
from ..engine.losses import get_loss

def load_data(config, echo=print):
    """``(train, val or None, class_names)`` for a config: the training split, the validation part held
    out of it (seeded), then the first ``train_subset`` images of what remains."""
    from ..data.loading import load_dataset
    from ..data.splits import first_n, train_val_split

    folder = config.dataset.startswith("folder:")
    if folder and config.test:
        check_folder_test_split(config.dataset[len("folder:"):])
    full = load_dataset(config.dataset, "train", config.data_dir, progress=config.progress,
                        mode=config.folder_mode)
    for note in full.notes:  # e.g. which picture mode an image folder was read in, and why
        echo(f"data: {note}")
    train, val = full, None
    # The sizes are checked here, in the options' own names (the split functions only know their arguments).
    total = len(full)
    if config.val_split == "test":  # the curves of the test set itself, epoch by epoch (no images held out)
        val = load_dataset(config.dataset, "test", config.data_dir, progress=config.progress, mode=config.folder_mode)
    elif config.val_split:
        count = int(config.val_split) if config.val_split >= 1 else float(config.val_split)
        held = count if isinstance(count, int) else int(round(count * total))
        if not 1 <= held <= total - 1:
            raise ConfigError(f"--val-split {config.val_split:g} holds out {held} of the {total:,} training images; "
                              f"it must leave at least one on each side (a count from 1 to {total - 1:,}, "
                              f"or a fraction), or 0 for no validation set")
        train, val = train_val_split(full, count, seed=config.seed)
    if config.train_subset:
        if config.train_subset > len(train):
            left = f" left after holding out {len(val):,} for validation" if val is not None else ""
            raise ConfigError(f"--train-subset {config.train_subset:,} is more than the {len(train):,} training "
                              f"images{left}; give at most {len(train):,}")
        train = first_n(train, config.train_subset)
    class_names = full.class_names
    if config.non_digits:
        train, val, class_names = with_non_digits(config, train, val)
    where = " (the test split)" if config.val_split == "test" else ""
    echo(f"data: {config.dataset}, {len(train):,} training images"
         + (f", {len(val):,} validation images{where}" if val is not None else ", no validation set"))
    return train, val, class_names


def with_non_digits(config, train, val):
    """``train`` and ``val`` with ``config.non_digits`` non-digit marks added as one more class (90% / 10%;
    all to training without a validation set). Drawn from the seed, so a resumed run sees the same ones."""
    from ..data.dataset import Dataset
    from ..synthetic.non_digits import NOT_A_DIGIT, non_digit_images

    if config.dataset.lower() not in DIGIT_STYLE or train.sample_shape != (1, 28, 28):
        raise ConfigError(f"--non-digits adds drawn non-digit marks to a digit dataset (28x28, one of "
                          f"{', '.join(DIGIT_STYLE)}); {config.dataset} is not one")
    marks = non_digit_images(config.non_digits, seed=config.seed)[:, None]
    label = len(train.class_names)
    held = len(marks) // 10 if val is not None else 0

    def extended(part, extra):
        labels = np.full(len(extra), label, dtype=part.labels.dtype)
        return Dataset(np.concatenate([part.images, extra]), np.concatenate([part.labels, labels]),
                       (*part.class_names, NOT_A_DIGIT), f"{part.name}+non-digits", part.split)

    return (extended(train, marks[held:]), extended(val, marks[:held]) if val is not None else None,
            (*train.class_names, NOT_A_DIGIT))


#: Datasets made the way MNIST was (NIST's pipeline: light ink on dark, cropped, centred by mass in 28x28):
#: a model trained on them reads pictures with the digit pipeline (cnnlab.recognition.preprocess).
DIGIT_STYLE = ("mnist", "qmnist", "kmnist", "emnist-digits", "emnist-letters")
#: Light objects on black, filling the 28x28 frame: whole pictures, inverted when light (cnnlab.recognition.picture).
WHOLE_LIGHT_ON_DARK = ("fashion-mnist",)


def check_folder_test_split(path: str) -> None:
    """The final test step needs ``train/`` and ``test/`` with the same classes: say so before training,
    not after the last epoch."""
    from ..data.folder import has_test_split, split_classes

    if not Path(path).expanduser().is_dir():
        return  # the loader says that the folder does not exist
    if not has_test_split(path):
        raise ConfigError(f"--test measures the final model on a test split, but {path} has no train/ and test/ "
                          f"sub-folders (one sub-folder per class in each): add them, or give --no-test")
    train, test = split_classes(path, "train"), split_classes(path, "test")
    if train != test:
        raise ConfigError(f"{path}: test/ must have the same class sub-folders as train/; train/ has "
                          f"{', '.join(train) or 'none'}, test/ has {', '.join(test) or 'none'}")


def preprocessing_for(dataset_name: str, sample_shape, standardize_with=None,
                      fat_strokes_seen: bool = False) -> dict:
    """The preprocessing description stored in the model file (what ``predict`` must do to a picture).

    Pixels are scaled to [0, 1]. With ``standardize_with`` (the uint8 training images ``(N, C, H, W)``)
    each channel is also shifted and scaled to mean 0 and standard deviation 1 over those images —
    measured on the training split only, so the validation and test sets stay unseen. A digit model
    trained with stroke-thickness augmentation (``fat_strokes_seen``) gets ``"thin_strokes": false``:
    the digit pipeline then leaves fat strokes as they are
    (:func:`cnnlab.recognition.preprocess.thins_strokes`).
    """
    from ..data.normalize import MNIST_PREPROCESSING

    if dataset_name.lower() in DIGIT_STYLE:
        pre = {**MNIST_PREPROCESSING, "pipeline": "digit"}
    elif dataset_name.lower() in WHOLE_LIGHT_ON_DARK:
        pre = {**MNIST_PREPROCESSING, "pipeline": "resize"}
    else:
        c, h, w = sample_shape  # the same scaling (÷255), pictures taken as they are
        pre = {**MNIST_PREPROCESSING, "polarity": "as-is", "size": [h, w], "channels": c}
        # Colour pictures (CIFAR-10, folders of photos) are read whole; gray folders keep the digit
        # pipeline, which is what they are mostly made of (a folder of handwritten characters).
        pre["pipeline"] = "resize" if c == 3 else "digit"
    if fat_strokes_seen and pre["pipeline"] == "digit":
        pre["thin_strokes"] = False
    if standardize_with is not None:  # statistics of pixels ÷ 255, the scale above
        from ..data import channel_stats

        mean, std = (np.round(v.astype(np.float64), 6).tolist() for v in channel_stats(standardize_with))
        std = [s if s > 0 else 1.0 for s in std]  # a constant channel: shifting is enough
        pre.update(mean=mean if len(mean) > 1 else mean[0], std=std if len(std) > 1 else std[0])
    return pre


def build_model(config, sample_shape, num_classes: int):
    """The model a config describes: a preset (``arch``) or an explicit ``layers`` list."""
    from .presets import build, parse_arch
    from ..engine.model import Sequential

    if config.layers:
        specs = []
        for i, spec in enumerate(config.layers):
            if not isinstance(spec, dict) or "type" not in spec:
                raise ConfigError(f"layers[{i}]: expected a table with a 'type' key, received {spec!r}")
            options = spec.get("config", {k: v for k, v in spec.items() if k not in ("type", "name")})
            check_layer_options(i, spec["type"], options)
            specs.append({"type": spec["type"], "name": spec.get("name"), "config": options})
        return Sequential.from_config({"name": "custom", "input_shape": list(sample_shape), "layers": specs},
                                      seed=config.seed)
    options = config.arch_kwargs()
    if parse_arch(config.arch)[0] == "mlp" and "output" not in options:
        # The softmax cross-entropy needs softmax outputs; Nielsen's quadratic and binary
        # cross-entropy costs use sigmoid output units (the preset's default).
        options["output"] = "softmax" if get_loss(config.loss).fused_activation == "Softmax" else "sigmoid"
    return build(config.arch, sample_shape, num_classes, seed=config.seed, **options)


def check_layer_options(index: int, kind, options) -> None:
    """A layer's options against its constructor, so a typo (``unit = 10``) is named as the user wrote it,
    with the options the layer takes — not Python's "Dense.__init__() got an unexpected keyword"."""
    import inspect

    from ..engine.layers import LAYER_TYPES

    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise ConfigError(f"layers[{index}]: unknown layer type {kind!r}; expected one of: {', '.join(sorted(LAYER_TYPES))}")
    if not isinstance(options, dict):
        raise ConfigError(f"layers[{index}] ({kind}): config must be a table of options, received {options!r}")
    params = {name: p for name, p in inspect.signature(LAYER_TYPES[kind].__init__).parameters.items()
              if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [k for k in options if k not in params]
    if unknown:
        raise ConfigError(f"layers[{index}] ({kind}): unknown option {', '.join(map(repr, unknown))}; "
                          f"expected some of: {', '.join(params) or 'none'}")
    missing = [k for k, p in params.items() if p.default is p.empty and k not in options]
    if missing:
        raise ConfigError(f"layers[{index}] ({kind}): option {', '.join(map(repr, missing))} is required")


def build_augmentation(config):
    """The :class:`~cnnlab.data.augment.Augmentation` of a config (or None), its options checked here:
    names against the ones it has, numbers finite — ``rotation = nan`` would otherwise turn every image."""
    import dataclasses
    import math

    if not config.augment:
        return None
    from ..data.augment import Augmentation

    accepted = [f.name for f in dataclasses.fields(Augmentation) if f.init]
    options = {}
    for key, value in config.augment_options.items():
        name = str(key).replace("-", "_")
        if name not in accepted:
            raise ConfigError(f"augment_options: unknown option {key!r}; expected some of: {', '.join(accepted)}")
        if name == "fill":
            ok = isinstance(value, str)
        elif name == "seed":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok:
            expected = {"fill": "text", "seed": "a non-negative integer"}.get(name, "a finite number")
            raise ConfigError(f"augment_options.{key} must be {expected}, received {value!r}")
        options[name] = value
    try:
        return Augmentation(**options)
    except ConfigError as exc:  # a range: "rotation must be >= 0", named as the config has it
        raise ConfigError(f"augment_options: {str(exc).removeprefix('Augmentation: ')}") from None


def build_optimizer(config, n_train: int):
    """(optimizer, weight decay it uses) for a config; ``lambda`` becomes ``λ / n_train`` (classic L2).

    Without ``weight_decay`` or ``lambda`` the optimizer keeps its own default (0, and AdamW's 1e-2).
    """
    from ..engine.optim import classic_l2, get_optimizer

    kwargs = {"lr": config.learning_rate}
    if config.weight_decay is not None:
        kwargs["weight_decay"] = config.weight_decay
    if config.lmbda is not None:
        kwargs["weight_decay"] = classic_l2(config.lmbda, n_train)
    if config.optimizer.lower() in ("sgd", "momentum", "nesterov"):
        if config.momentum is not None:
            kwargs["momentum"] = config.momentum
        if config.nesterov:
            kwargs["nesterov"] = True
    elif config.momentum is not None or config.nesterov:
        raise ConfigError(f"momentum applies to the sgd, momentum and nesterov optimizers, not {config.optimizer!r}")
    optimizer = get_optimizer(config.optimizer, **kwargs)
    return optimizer, optimizer.weight_decay


def build_schedule(config):
    from ..engine.optim import get_schedule

    options = {"constant": {}, "step": {"step_size": config.step_size, "gamma": config.gamma},
               "cosine": {"total_epochs": config.epochs, "min_lr": config.min_lr}}
    return get_schedule(config.schedule, config.learning_rate, **options.get(config.schedule, {}))


