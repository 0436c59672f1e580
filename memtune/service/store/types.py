"""A JSON column that keeps NaN and +-inf: JSON has no such numbers and PostgreSQL refuses them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

from memtune.studies.nonfinite import from_store, to_store


class FloatSafeJSON(TypeDecorator):
    """JSON whose non-finite floats are stored as ``{"$float": "nan" | "inf" | "-inf"}``."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else to_store(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else from_store(value)
