"""How numbers are read back from JSON and written as text: one place for the verdict's text
and the reproduction's report, so that the two never print the same number differently.

Non-finite values are written as memtune writes them everywhere ("inf", "-inf", "nan": see
:mod:`memtune.studies.nonfinite`); a missing value is "-".
"""

from __future__ import annotations

import math
from typing import Any

from memtune.studies.nonfinite import json_float

__all__ = ["as_number", "format_number", "format_p"]

_NON_FINITE = ("inf", "-inf", "nan", "Infinity", "-Infinity", "NaN")


def as_number(value: Any) -> float | None:
    """A float from a JSON value (non-finite numbers as "inf", "-inf", "nan" or JavaScript's
    "Infinity" strings); None for a missing value or a boolean."""
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def format_number(value: Any, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits. A string that is not a non-finite number
    (a categorical hyperparameter: SAM's base, AM-AdamW's coupling) is written as it is."""
    if isinstance(value, str) and value not in _NON_FINITE:
        return value
    number = as_number(value)
    if number is None:
        return "-"
    if not math.isfinite(number):
        return str(json_float(number))  # the names memtune writes everywhere
    return f"{number:.{digits}g}"


def format_p(value: float | None) -> str:
    """A p-value: three decimals, or "<0.001"."""
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
