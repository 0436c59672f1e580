"""A JSON column that keeps NaN and +-inf: JSON has no such numbers and PostgreSQL refuses them."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

_MARK = "$float"


def encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {_MARK: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _MARK in value:
            return float(value[_MARK])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class FloatSafeJSON(TypeDecorator):
    """JSON whose non-finite floats are stored as ``{"$float": "nan" | "inf" | "-inf"}``."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else encode(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else decode(value)
