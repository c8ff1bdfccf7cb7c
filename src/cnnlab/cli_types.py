"""Option types shared by the command-line tools: numbers checked where they are typed.

click's own ``FloatRange`` lets ``nan`` through (every comparison with NaN is false), and a NaN rotation
or tolerance then fails deep inside NumPy with a traceback. :class:`Finite` refuses NaN and infinities
and checks a range, so a mistyped value is a one-line usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math

import click

from .engine.errors import ConfigError


class Finite(click.ParamType):
    """A finite float, optionally ``>= low`` (``> low`` with ``open_low``) and ``<= high``."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, open_low: bool = False):
        self.low, self.high, self.open_low = low, high, open_low

    def _range(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return " and ".join(parts) or "finite"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.open_low else number < self.low)
        too_high = self.high is not None and number > self.high
        if not math.isfinite(number) or too_low or too_high:
            self.fail(f"{value!r} is not a finite number {self._range()}", param, ctx)
        return number


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,28,28"`` (or ``1x28x28``) -> ``(1, 28, 28)``; a ConfigError naming ``--input-shape`` otherwise."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must be integers like 1,28,28, received {text!r}") from None
    if not shape or min(shape) <= 0:
        raise ConfigError(f"--input-shape must be positive integers like 1,28,28, received {text!r}")
    return shape
