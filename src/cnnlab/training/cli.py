"""The ``cnnlab train`` and ``cnnlab evaluate`` commands (registered on the group in :mod:`cnnlab.cli`).

They only translate options: ``train`` builds a :class:`~cnnlab.training.config.TrainConfig` (defaults < config
file < command-line options) and calls :func:`cnnlab.training.runs.train_run`; ``evaluate`` loads a model and calls
:func:`cnnlab.training.loop.evaluate`. Every option left out is ``None`` here, so it never hides a value from the
config file.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..engine.device import DEVICES
from ..engine.errors import ConfigError, NumericalError


def _split_value(text: str | None):
    """``"0.1"`` -> 0.1 (a fraction), ``"10000"`` -> 10000 (a count), ``"test"``: the test split."""
    if text is None:
        return None
    if text.strip().lower() == "test":
        return "test"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--val-split must be a fraction like 0.1, a count like 10000 or 'test', "
                          f"received {text!r}") from None
    return int(value) if value >= 1 and value.is_integer() else value


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML or YAML file with the options.")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the run in this folder exactly where it stopped (with --epochs, --lr, --device).")
@click.option("--arch", help="Architecture preset: mlp, mlp:784-30-10, lenet5, vgg-mini, keras-mnist, cnn-bn.  [lenet5]")
@click.option("--activation", help="Activation of the preset's hidden layers: relu, tanh, sigmoid, elu, leaky-relu.")
@click.option("--pooling", help="Pooling of the preset: max or avg.")
@click.option("--init", help="Weight initializer: default (1/sqrt(n_in)), large, glorot, he, uniform.")
@click.option("--dataset", help="mnist, fashion-mnist, kmnist, qmnist, emnist-digits, emnist-letters, cifar10 "
                                "or folder:PATH.  [mnist]")
@click.option("--data-dir", help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--folder-mode", type=click.Choice(["auto", "digit", "gray", "rgb"]),
              help="Image folders: digit (gray 28x28, centred as MNIST), gray, rgb (32x32), or auto: what most "
                   "pictures are.  [auto]")
@click.option("--epochs", type=int, help="Number of epochs.  [10]")
@click.option("--batch-size", type=int, help="Mini-batch size.  [100]")
@click.option("--optimizer", help="sgd, momentum, nesterov, adam, adamw.  [adam]")
@click.option("--lr", type=float, help="Learning rate η.  [1e-3 for adam, 0.1 for sgd]")
@click.option("--momentum", type=float, help="Momentum μ of the SGD family.")
@click.option("--nesterov/--no-nesterov", default=None, help="Nesterov momentum.")
@click.option("--schedule", help="Learning-rate schedule: constant, step, cosine.  [constant]")
@click.option("--step-size", type=int, help="Epochs between two steps of the step schedule.  [10]")
@click.option("--gamma", type=float, help="Factor of the step schedule.  [0.1]")
@click.option("--min-lr", type=float, help="Final learning rate of the cosine schedule.  [0]")
@click.option("--lambda", "lmbda", type=float, help="Classic L2 λ (weight decay λ/n_train).")
@click.option("--weight-decay", type=float, help="Weight decay (instead of --lambda).")
@click.option("--loss", help="crossentropy, binary-crossentropy, quadratic.  [crossentropy]")
@click.option("--augment/--no-augment", default=None, help="Random rotation/shift/scale of training images.")
@click.option("--standardize/--no-standardize", default=None,
              help="Shift and scale inputs to mean 0, std 1 per channel (measured on the training split).")
@click.option("--val-split", help="Held out for validation: a fraction (0.1) or a count (10000); 'test' to validate on the "
              "test split after every epoch (as the Keras course does); 0 for none.  [0.1]")
@click.option("--train-subset", type=int, help="Train on the first N training images only.")
@click.option("--non-digits", type=int,
              help="Add N drawn letters and scribbles as an 11th class, 'not a digit' (digit datasets).  [0]")
@click.option("--seed", type=int, help="Seed of the weights, the split, the shuffling.  [0]")
@click.option("--device", type=click.Choice(DEVICES),
              help="Train on the CPU (NumPy) or on a CUDA GPU (CuPy: pip install 'cnnlab[gpu]').  [cpu]")
@click.option("--out", help="Folder that receives the run folder.  [runs]")
@click.option("--name", help="Name of the run folder (default: <arch>-<dataset>-<date>-<time>).")
@click.option("--train-cost/--no-train-cost", default=None, help="Monitor the training cost.")
@click.option("--train-accuracy/--no-train-accuracy", default=None, help="Monitor the training accuracy.")
@click.option("--val-cost/--no-val-cost", default=None, help="Monitor the validation cost.")
@click.option("--val-accuracy/--no-val-accuracy", default=None, help="Monitor the validation accuracy.")
@click.option("--full-train-eval/--no-full-train-eval", default=None,
              help="Measure training cost/accuracy on the whole training set after each epoch (slower).")
@click.option("--early-stop", type=int, help="Stop after N epochs without better validation accuracy.")
@click.option("--stop-when-stuck/--keep-going-when-stuck", default=None,
              help="Stop a run whose accuracy has stayed at chance for 3 epochs (1,000 steps) while its cost "
                   "no longer falls; --keep-going-when-stuck trains every epoch (a plateau some recipes escape)."
                   "  [stop-when-stuck]")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar per epoch.")
@click.option("--test/--no-test", default=None, help="Evaluate on the test set at the end.  [test]")
@click.option("--tensorboard", "tensorboard_dir", type=click.Path(file_okay=False),
              help="Also log metrics and weight histograms as TensorBoard events in this folder "
                   "(needs tensorboardX: pip install 'cnnlab[tensorboard]').")
@click.pass_context
def train(ctx, config_file, resume, train_cost, train_accuracy, val_cost, val_accuracy, val_split, tensorboard_dir,
          **options):
    """Train a network and keep everything in a run folder.

    \b
    Examples:
      cnnlab train --arch lenet5 --dataset mnist --epochs 10
      cnnlab train --arch mlp:784-30-10 --loss quadratic --optimizer sgd --lr 3 --batch-size 10 --epochs 30
      cnnlab train --config runs.toml --epochs 2
      cnnlab train --resume runs/lenet5-mnist-20240501-120000 --epochs 20
      cnnlab train --epochs 5 --tensorboard tb/lenet5   (then: tensorboard --logdir tb)
    """
    from .config import TrainConfig
    from .runs import RESUME_OPTIONS, train_run

    callbacks = []
    if tensorboard_dir:  # a logger beside metrics.csv, not a training option: allowed with --resume too
        from .tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(tensorboard_dir))

    monitors = {k: v for k, v in dict(train_cost=train_cost, train_accuracy=train_accuracy, val_cost=val_cost,
                                       val_accuracy=val_accuracy).items() if v is not None}
    options["val_split"] = _split_value(val_split)
    if resume:
        allowed = set(RESUME_OPTIONS)
        ignored = sorted(k for k, v in options.items() if v is not None and k not in allowed)
        if config_file or ignored or monitors:
            flag = {"lmbda": "lambda"}  # the options as the user typed them, not their Python names
            given = ", ".join(f"--{flag.get(k, k).replace('_', '-')}" for k in ignored + sorted(monitors))
            given = given or "--config"
            allowed_flags = ", ".join(f"--{k}" for k in RESUME_OPTIONS)
            raise ConfigError(f"--resume continues a run with its own options; only {allowed_flags} may be "
                              f"given, received {given}")
    config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
    if monitors:
        options["monitors"] = {**config.monitors, **monitors}
    config = config.replace(**options)
    try:
        run, history, _ = train_run(config if not resume else _resume_changes(options), resume=resume,
                                    echo=click.echo, callbacks=callbacks)
    except NumericalError as exc:
        if getattr(exc, "run", None) is None:
            raise
        # A result, not a user mistake: the run folder says what happened (exit 1, as a failed check).
        click.echo(f"done (diverged, {exc.history.epochs_done} epochs kept): everything is in {exc.run.path}",
                   err=True)
        ctx.exit(1)
    click.echo(f"done ({history.stop_reason}, {history.epochs_done} epochs): everything is in {run.path}")
    if history.stop_reason == "interrupted":
        ctx.exit(130)


def _resume_changes(options: dict):
    """A config carrying only the options ``--resume`` accepts (the rest comes from the run folder)."""
    from types import SimpleNamespace

    from .runs import RESUME_OPTIONS

    return SimpleNamespace(**{k: options.get(k) for k in RESUME_OPTIONS})


def _model_and_folder(model_path: str | None):
    """(model, folder that receives the figures by default, label) for MODEL: a file, a run folder, the name
    of a bundled model (``digits``, ``lenet5``, ``fashion``), or none (the bundled digit model).

    The folder is None when MODEL is not in a run folder: figures are then written only where ``--out`` says.
    """
    from ..io import BUNDLED_MODELS, bundled_model_path, load_bundled_model, load_model

    if model_path is None:
        return load_bundled_model(), None, f"bundled model ({bundled_model_path().name})"
    path = Path(model_path)
    if str(model_path) in BUNDLED_MODELS and not path.exists():
        return (load_bundled_model(str(model_path)), None,
                f"bundled model {model_path} ({bundled_model_path(str(model_path)).name})")
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise ConfigError(f"{path} is a folder without model.safetensors; give a model file or a run folder")
        return load_model(path / "model.safetensors"), path, str(path)
    folder = path.parent if (path.parent / "config.json").is_file() else None
    return load_model(path), folder, str(path)


@click.command()
@click.argument("model", required=False, type=click.Path())
@click.option("--dataset", help="Dataset to evaluate on (default: the one the model was trained on, else mnist).")
@click.option("--split", default="test", show_default=True, help="Split of the dataset.")
@click.option("--data-dir", help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab).")
@click.option("--json", "as_json", is_flag=True, help='Print {"accuracy", "n", "per_class", "confusion"} as JSON.')
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for confusion.png and misclassified.png (default: the run folder).")
@click.option("--plots/--no-plots", default=None,
              help="Write the two PNG files (default: into the run folder or --out; nowhere else unless asked).")
@click.option("--max-images", default=36, show_default=True, type=click.IntRange(min=0),
              help="Misclassified images in the gallery.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Images per inference batch (256, as model.predict_proba: small work arrays, no loss of speed).")
def evaluate(model, dataset, split, data_dir, as_json, out, plots, max_images, batch_size):
    """Accuracy, per-class accuracy, confusion matrix and a gallery of mistakes of MODEL.

    MODEL is a model file, a run folder or a bundled model's name (digits, lenet5, fashion);
    without it, the bundled digit model is evaluated.
    """
    from ..data.loading import load_dataset
    from .loop import evaluate as evaluate_dataset

    net, folder, label = _model_and_folder(model)
    dataset = dataset or net.info.get("extra", {}).get("dataset") or "mnist"
    # an image folder is read in the mode the model was trained in (its input: gray 28x28, rgb 32x32...)
    mode = net.info.get("extra", {}).get("config", {}).get("folder_mode", "auto")
    data = load_dataset(dataset, split, data_dir, progress=not as_json, mode=mode)
    result = evaluate_dataset(net, data, batch_size=batch_size)
    note = click.echo if not as_json else (lambda text: click.echo(text, err=True))
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        click.echo(f"model: {label}\ndata: {dataset} [{split}], {result.n:,} images\n")
        click.echo(result.report())
    folder = Path(out) if out else folder
    if plots is None:  # nothing is written where the user did not ask: a run folder, or --out
        plots = folder is not None
    if plots:
        from ..plots import confusion_figure, misclassified_figure, save_figure

        folder = folder if folder is not None else Path(".")  # --plots asked for them: here
        title = f"{Path(label).name} on {dataset} [{split}]"
        save_figure(confusion_figure(result.confusion, result.class_names, title=f"confusion: {title}"),
                    folder / "confusion.png")
        save_figure(misclassified_figure(data.images, result.labels, result.predictions, result.class_names,
                                         indices=result.misclassified, max_images=max_images,
                                         title=f"{len(result.misclassified):,} misclassified of {result.n:,} "
                                               f"(first {min(max_images, len(result.misclassified))} shown)"),
                    folder / "misclassified.png")
        note(f"\nwrote {folder / 'confusion.png'} and {folder / 'misclassified.png'}")
