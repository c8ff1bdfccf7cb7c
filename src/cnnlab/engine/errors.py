"""One family of errors for everything a user can get wrong.

The CLI catches :class:`CnnlabError` and prints its message as one line on stderr with a non-zero exit
code, so a user mistake never ends in a traceback. Messages say what was expected and what was received.
"""


class CnnlabError(Exception):
    """Base class of every error cnnlab raises on purpose."""


class ShapeError(CnnlabError, ValueError):
    """An array had the wrong shape (or number of channels) for a layer or a loss."""


class ConfigError(CnnlabError, ValueError):
    """A layer, model, optimizer or training option was given an invalid value."""


class DataError(CnnlabError, ValueError):
    """A dataset file is missing, corrupt or inconsistent."""


class ModelFileError(CnnlabError, ValueError):
    """A model file cannot be read or does not match the architecture it claims."""


class NumericalError(CnnlabError, FloatingPointError):
    """A loss or gradient became NaN or infinite."""
