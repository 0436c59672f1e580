"""The built-in tasks' options and the split seed, torch-free: the task registry
(:mod:`memtune.studies.tasks`) names them, and the code that builds a task's data and runs
(:mod:`memtune.studies.datasets`, :mod:`memtune.studies.runs`) reads them, as
:mod:`memtune.optimizers.options` does for the optimizers.

A plugin's task subclasses :class:`Options` (frozen, unknown fields refused).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SPLIT_SEED",
    "CharLMOptions",
    "DigitsOptions",
    "FashionOptions",
    "LandscapeOptions",
    "LogregOptions",
    "Options",
    "QuadraticOptions",
    "SharpFlatOptions",
]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# How every task with data is split: one permutation by a fixed split seed, so a study's
# validation and test sets never change between trials, seeds or runs of memtune.
SPLIT_SEED = 0


class LogregOptions(Options):
    batch_size: int = Field(32, ge=1)
    train_size: int | None = Field(None, ge=2)


class DigitsOptions(Options):
    batch_size: int = Field(64, ge=1)
    width: int = Field(64, ge=1)
    train_size: int | None = Field(None, ge=2)


class FashionOptions(Options):
    batch_size: int = Field(128, ge=1)
    width: int = Field(
        256, ge=1, description="hidden width (MLP) or channels of the first conv (CNN)"
    )
    train_size: int | None = Field(None, ge=2)
    val_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)


class CharLMOptions(Options):
    batch_size: int = Field(32, ge=1)
    seq_len: int = Field(64, ge=2)
    embed: int = Field(32, ge=1)
    hidden: int = Field(128, ge=1)
    train_chars: int | None = Field(
        None, ge=1000, description="characters of training text (default: 90%)"
    )
    val_chars: int = Field(
        20_000, ge=100, description="characters of validation text, and of test text"
    )


class QuadraticOptions(Options):
    dim: int = Field(50, ge=1)
    condition: float = Field(100.0, ge=1.0, description="condition number L / mu")
    steps_per_epoch: int = Field(50, ge=1)


class LandscapeOptions(Options):
    steps_per_epoch: int = Field(100, ge=1)
    noise: float = Field(0.0, ge=0.0, description="standard deviation of the gradient noise")


class SharpFlatOptions(LandscapeOptions):
    sharpness: float = Field(8.0, gt=0.0)
    noise: float = Field(0.3, ge=0.0)
