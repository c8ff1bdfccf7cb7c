"""``python -m cnnlab ...``: the same command line as the ``cnnlab`` script, for environments where the
script is not on PATH (a venv not activated, a notebook's ``!python -m cnnlab``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
