"""The one encoding of non-finite numbers (a diverged run's metric is ``inf`` or ``nan``).

JSON has no NaN or infinity, so memtune writes them out in two places, each with one walker:

- every API response and export: the strings ``"nan"``, ``"inf"``, ``"-inf"``
  (:func:`to_json`); typed readers (pydantic, the dashboard) turn them back into numbers;
- the database's JSON columns: ``{"$float": "nan" | "inf" | "-inf"}`` (:func:`to_store`,
  :func:`from_store`), which cannot be mistaken for a string a user wrote (a study named
  "inf" stays a string).

Torch-free: the API imports it on its request path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import PlainSerializer

__all__ = ["STORE_MARK", "JsonObject", "Number", "from_store", "json_float", "to_json", "to_store"]

STORE_MARK = "$float"


def json_float(value: float | None) -> float | str | None:
    """``value`` as JSON can hold it: finite floats unchanged, the others as their name."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _walk(value: Any, leaf: Callable[[float], Any]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return leaf(value)
    if isinstance(value, dict):
        return {str(k): _walk(v, leaf) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, leaf) for v in value]
    return value


def to_json(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with every non-finite float as its name."""
    return _walk(value, json_float)


def to_store(value: Any) -> Any:
    """A copy for the database's JSON columns, non-finite floats tagged."""
    return _walk(value, lambda x: {STORE_MARK: json_float(x)})


def from_store(value: Any) -> Any:
    """The inverse of :func:`to_store`. Only containers are walked into: an epoch's metrics
    (a flat dict of numbers, read 10,000 at a time by the dashboard's curves) cost one pass."""
    if isinstance(value, dict):
        if len(value) == 1 and STORE_MARK in value:
            return float(value[STORE_MARK])
        return {k: from_store(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [from_store(v) if isinstance(v, dict | list) else v for v in value]
    return value


# Typed fields that go out through this encoding: a float written as a number or as its name
# (pydantic alone writes NaN and inf as null, and a diverged trial would look unfinished).
# Read back, pydantic's lax float parsing takes the names too.
Number = Annotated[
    float, PlainSerializer(json_float, return_type=float | str, when_used="json-unless-none")
]
JsonObject = Annotated[dict[str, Any], PlainSerializer(to_json, when_used="json-unless-none")]
