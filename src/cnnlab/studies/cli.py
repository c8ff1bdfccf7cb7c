"""The ``cnnlab sweep`` command and the ``cnnlab study`` group (``datasize``, ``init``, ``overfitting``).

Registered on the main group in :mod:`cnnlab.cli`. The commands only translate options; the work is in
:mod:`cnnlab.studies.sweep` and the study modules. Options left out are ``None`` so that they never hide
a value from the grid file or the study's defaults.
"""

from __future__ import annotations

import click

from ..engine.errors import ConfigError


def _parse_set(values) -> dict:
    """``("lr=0.01", "augment=true", "arch_options.conv_layers=2")`` -> options (TOML values, else text)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    options = {}
    for text in values:
        key, eq, value = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE like lr=0.01 or pooling=max, received {text!r}")
        try:
            options[key.strip()] = tomllib.loads(f"value = {value.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            options[key.strip()] = value.strip()  # a bare word: max, relu, lenet5
    return options


def _parse_list(text: str | None, kind, option: str):
    if text is None:
        return None
    try:
        return [kind(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated values like 100,1000,10000, received {text!r}") from None


def execution_options(default_out: str):
    """Options shared by every command that runs trials: where, how many at a time, on what."""
    def decorate(command):
        for option in reversed([
            click.option("--out", default=default_out, show_default=True,
                         help="Folder of the run folders and of the tables and figures."),
            click.option("--jobs", "-j", type=int, help="Trials at the same time.  [number of cores]"),
            click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                         help="local: worker processes on this machine; ray: Ray tasks (pip install ray)."),
            click.option("--address", help="Ray cluster address (with --executor ray), e.g. ray://head:10001."),
            click.option("--cpus-per-trial", type=int, help="CPUs each Ray trial asks for.  [cores/jobs; 1 on a cluster]"),
            click.option("--data-dir", help="Data folder (default: $CNNLAB_DATA, else ~/.cache/cnnlab)."),
            click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                         help="Any training option for every trial, e.g. --set val_split=5000 (repeatable)."),
        ]):
            command = option(command)
        return command
    return decorate


def _executor_kwargs(options: dict) -> dict:
    return {k: options.pop(k) for k in ("jobs", "executor", "address", "cpus_per_trial")}


def _finish(ctx, outcomes) -> None:
    """Exit code 1 (and say which) when some trials failed or diverged."""
    bad = [o for o in outcomes if o.status in ("failed", "diverged")]
    if bad:
        click.echo(f"{len(bad)} trial(s) did not finish: " + ", ".join(f"{o.trial.name} ({o.status})" for o in bad),
                   err=True)
        ctx.exit(1)


@click.command()
@click.argument("grid")
@click.option("--epochs", type=int, help="Epochs of every trial (overrides the grid's base).")
@click.option("--train-subset", type=int, help="Train every trial on the first N training images.")
@execution_options("runs/sweep-<grid>")
@click.pass_context
def sweep(ctx, grid, epochs, train_subset, out, data_dir, settings, **options):
    """Train every variant of a GRID (a .toml/.yaml file or a built-in name: lab) and tabulate them.

    \b
    Writes one run folder per trial, results.md, results.csv and curves.png into --out.
    Run the same command again to resume an interrupted sweep: finished trials are skipped,
    unfinished ones continue from their checkpoint.
    \b
    Examples:
      cnnlab sweep lab
      cnnlab sweep lab --epochs 2 --train-subset 5000 --jobs 2 --out runs/lab-quick
      cnnlab sweep my-grid.toml --executor ray --address ray://head:10001
    """
    from pathlib import Path

    from .grid import load_grid
    from .sweep import run_sweep

    loaded = load_grid(grid)
    if out == "runs/sweep-<grid>":
        out = f"runs/sweep-{Path(grid).stem}"
    overrides = {"epochs": epochs, "train_subset": train_subset, "data_dir": data_dir, **_parse_set(settings)}
    outcomes, _ = run_sweep(loaded, out, overrides=overrides, echo=click.echo, **_executor_kwargs(options))
    _finish(ctx, outcomes)


@click.group()
def study() -> None:
    """Classic experiments, each one command -> a table (Markdown + CSV) and a figure."""


@study.command()
@click.option("--sizes", help="Training-set sizes, comma-separated.  [100,300,1000,3000,10000,50000]")
@click.option("--epochs", type=int, help="Epochs at the largest size (smaller sets get more).  [10]")
@click.option("--max-epochs", type=int, default=200, show_default=True, help="Cap on the scaled epochs.")
@click.option("--lambda", "lmbda", type=float, help="Classic L2 λ at the largest size (scaled with n).  [5.0]")
@click.option("--arch", help="Architecture.  [mlp:784-30-10]")
@click.option("--dataset", help="mnist or fashion-mnist.  [mnist]")
@execution_options("runs/study-datasize")
@click.pass_context
def datasize(ctx, sizes, epochs, max_epochs, lmbda, arch, dataset, out, data_dir, settings, **options):
    """Accuracy versus training-set size (log axis): accuracy.png, results.md, results.csv."""
    from . import datasize as module
    from .sweep import run_study

    sizes = _parse_list(sizes, int, "--sizes") or module.DEFAULT_SIZES
    study_trials = module.trials(sizes, max_epochs=max_epochs, **_study_options(
        epochs=epochs, lmbda=lmbda, arch=arch, dataset=dataset, data_dir=data_dir, settings=settings))
    outcomes, _ = run_study(study_trials, out, module.write_report, echo=click.echo, **_executor_kwargs(options))
    click.echo(f"results: {out}/results.md, {out}/accuracy.png")
    _finish(ctx, outcomes)


@study.command(name="init")
@click.option("--archs", help="Networks, comma-separated.  [mlp:784-30-10,mlp:784-100-10]")
@click.option("--epochs", type=int, help="Epochs per run.  [30]")
@click.option("--dataset", help="mnist or fashion-mnist.  [mnist]")
@execution_options("runs/study-init")
@click.pass_context
def init_study(ctx, archs, epochs, dataset, out, data_dir, settings, **options):
    """Default (std 1/sqrt(n_in)) versus large (std 1) weights: accuracy.png, results.md, results.csv."""
    from . import initialization as module
    from .sweep import run_study

    archs = _parse_list(archs, str, "--archs") or module.DEFAULT_ARCHS
    study_trials = module.trials(archs, **_study_options(epochs=epochs, dataset=dataset, data_dir=data_dir,
                                                          settings=settings))
    outcomes, _ = run_study(study_trials, out, module.write_report, echo=click.echo, **_executor_kwargs(options))
    click.echo(f"results: {out}/results.md, {out}/accuracy.png")
    _finish(ctx, outcomes)


@study.command()
@click.option("--train-subset", type=int, help="Training images.  [1000]")
@click.option("--epochs", type=int, help="Epochs per run.  [400]")
@click.option("--lambda", "lmbda", type=float, default=0.1, show_default=True, help="λ of the L2 runs.")
@click.option("--arch", help="Architecture.  [mlp:784-30-10]")
@click.option("--dataset", help="mnist or fashion-mnist.  [mnist]")
@execution_options("runs/study-overfitting")
@click.pass_context
def overfitting(ctx, train_subset, epochs, lmbda, arch, dataset, out, data_dir, settings, **options):
    """Training vs validation cost and accuracy, with/without L2 and augmentation: curves.png, results.md."""
    from . import overfitting as module
    from .sweep import run_study

    study_trials = module.trials(lmbda, **_study_options(train_subset=train_subset, epochs=epochs, arch=arch,
                                                         dataset=dataset, data_dir=data_dir, settings=settings))
    outcomes, _ = run_study(study_trials, out, module.write_report, echo=click.echo, **_executor_kwargs(options))
    click.echo(f"results: {out}/results.md, {out}/curves.png")
    _finish(ctx, outcomes)


def _study_options(settings=(), **options) -> dict:
    """Named options (``None`` = the study's default) and ``--set`` ones, the latter winning."""
    return {**{k: v for k, v in options.items() if v is not None}, **_parse_set(settings)}
