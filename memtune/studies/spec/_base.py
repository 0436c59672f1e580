"""The base of every model of a study spec, and the error a spec that cannot run raises.

``SpecError`` names the field it blames as a dotted path (``arms.0.fixed.lr``) and the reason;
``_Model`` forbids unknown fields, so a misspelt key is an error rather than a silent default.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SpecError"]


class SpecError(ValueError):
    """A study spec that cannot run; ``field`` names where, as a dotted path."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class _Model(BaseModel):
    # Numbers and flags are strict where declared (true is not a 1, "0.5" is not a number: the
    # JSON Schema says so); YAML files are read as YAML 1.2 numbers (see _YamlLoader).
    model_config = ConfigDict(extra="forbid")
