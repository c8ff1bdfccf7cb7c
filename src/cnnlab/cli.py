"""The ``cnnlab`` command line: one small function per subcommand.

Heavy imports (matplotlib, the server, the datasets) happen inside the commands that need them, so
``cnnlab --help`` stays instant. Every :class:`~cnnlab.errors.CnnlabError` becomes one line on stderr and
exit code 2: a user mistake never ends in a traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import CnnlabError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnlab")
def cli() -> None:
    """Understand, train, study and use convolutional neural networks."""


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
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    # ctx.exit(code) and commands that return an int give the process exit code.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
