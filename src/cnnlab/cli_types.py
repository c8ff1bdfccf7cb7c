"""Option types shared by the command-line tools: numbers checked where they are typed.

click's own ``FloatRange`` lets ``nan`` through (every comparison with NaN is false), and a NaN rotation
or tolerance then fails deep inside NumPy with a traceback. :class:`Finite` refuses NaN and infinities
and checks a range, so a mistyped value is a one-line usage error (exit 2) naming the option.
"""

from __future__ import annotations

import math

import click


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

