"""The ``cnnlab`` command line: one small function per subcommand.

Heavy imports (matplotlib, the server, the datasets) happen inside the commands that need them, so
``cnnlab --help`` stays instant. Every :class:`~cnnlab.engine.errors.CnnlabError` becomes one line on stderr and
exit code 2: a user mistake never ends in a traceback.
"""

from __future__ import annotations

import sys

import click

from .version import __version__
from .cli_types import Finite, parse_shape
from .engine.errors import CnnlabError


def _install_completion(ctx, _param, shell) -> None:
    """``--install-completion [SHELL]``: add click's completion line to the shell's start-up file, exit."""
    if shell is None or ctx.resilient_parsing:
        return
    from .completion import detect_shell, install_completion

    path, changed = install_completion(detect_shell() if shell == "auto" else shell)
    click.echo(f"{'added' if changed else 'already in'} {path}: cnnlab completion works in new shells"
               + ("" if changed else " (nothing changed)"))
    ctx.exit(0)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnlab")
@click.option("--install-completion", type=click.Choice(["auto", "bash", "zsh", "fish"]), is_flag=False,
              flag_value="auto", expose_value=False, is_eager=True, callback=_install_completion,
              help="Turn on shell completion (default: the shell of $SHELL) and exit.")
def cli() -> None:
    """Understand, train, study and use convolutional neural networks."""


# -- shared options ---------------------------------------------------------------------------------
def arch_option(default: str | None = "lenet5"):
    return click.option("--arch", "arch", default=default, show_default=True,
                        help="Architecture preset: mlp, mlp:784-30-10, lenet5, vgg-mini, keras-mnist, cnn-bn.")


def input_shape_option():
    return click.option("--input-shape", default="1,28,28", show_default=True,
                        help="Shape of one sample, C,H,W (3,32,32 for CIFAR-10).")


# -- engine commands ---------------------------------------------------------------------------------
@cli.command()
@arch_option()
@input_shape_option()
@click.option("--classes", default=10, show_default=True, help="Number of output classes.")
def summary(arch: str, input_shape: str, classes: int) -> None:
    """Print the layers, output shapes and parameter counts of an architecture."""
    from .training.presets import build

    click.echo(build(arch, parse_shape(input_shape), classes).summary())


@cli.command()
@arch_option()
@input_shape_option()
@click.option("--classes", default=10, show_default=True, help="Number of output classes.")
@click.option("--batch", default=3, show_default=True, type=click.IntRange(min=1), help="Random samples in the check.")
@click.option("--samples", default=20, show_default=True, type=click.IntRange(min=1),
              help="Entries checked per parameter tensor.")
@click.option("--tolerance", default=1e-5, show_default=True, type=Finite(0, open_low=True),
              help="Largest acceptable relative error.")
@click.option("--loss", "loss_name", default="crossentropy", show_default=True, help="Loss to differentiate.")
@click.option("--seed", default=0, show_default=True)
@click.pass_context
def gradcheck(ctx, arch, input_shape, classes, batch, samples, tolerance, loss_name, seed) -> None:
    """Check every parameter gradient of an architecture against finite differences (float64).

    Prints the worst relative error per layer; exits with code 1 if any is above the tolerance.
    """
    import numpy as np

    from .training.presets import build
    from .engine.gradcheck import check_model
    from .engine.losses import get_loss

    shape = parse_shape(input_shape)
    model = build(arch, shape, classes, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape))
    y = rng.integers(0, classes, size=batch)
    errors = check_model(model, x, y, get_loss(loss_name), max_elements=samples, rng=rng)
    width = max(map(len, errors)) + 2
    click.echo(f"{'layer':<{width}}worst relative error")
    for layer, err in errors.items():
        flag = "" if err <= tolerance else "   <-- above tolerance"
        click.echo(f"{layer:<{width}}{err:.2e}{flag}")
    worst = max(errors.values(), default=0.0)
    ok = worst <= tolerance
    click.echo(f"{'OK' if ok else 'FAILED'}: worst {worst:.2e}, tolerance {tolerance:.0e}")
    ctx.exit(0 if ok else 1)


# -- commands that live next to their subsystem ----------------------------------------------------------
def _register_subsystem_commands() -> None:
    """Add the command groups defined beside the code they drive (data, training, recognition, export)."""
    from .data.cli import data
    from .interop.cli import export, import_weights
    from .inspect_cli import bench, show
    from .recognition.serve.cli import predict, serve
    from .studies.cli import study, sweep
    from .training.cli import evaluate, train

    for command in (data, train, evaluate, predict, serve, sweep, study, bench, show, export, import_weights):
        cli.add_command(command)


_register_subsystem_commands()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        result = cli.main(args=argv, prog_name="cnnlab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CnnlabError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:  # an output path that cannot be written: read-only, missing, full disk...
        where = exc.filename if exc.filename is not None else "the output"
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason += " (a file stands where a folder is needed)"
        click.echo(f"error: cannot write {where}: {reason}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    # ctx.exit(code) and commands that return an int give the process exit code.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
