"""An arm of a study: the optimizer it runs, what it pins and what it searches, and the
learning-rate schedule every arm trains with. ``RangeOverride`` narrows (or widens) one
searched range; ``WARMUP`` and ``BETA1`` are the hyperparameters an arm may search that are not
an optimizer's own arguments (the trial applies them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, StrictFloat, field_validator, model_validator

from memtune.optimizers import (
    OPTIMIZERS,
    ArgumentError,
    CategoricalParam,
    FloatParam,
    IntParam,
    OptimizerSpec,
)
from memtune.studies.spec._base import _Model

__all__ = ["BETA1", "SCHEDULE_PARAMS", "WARMUP", "ArmSpec", "RangeOverride", "Schedule"]


class RangeOverride(_Model):
    """A narrower (or wider) range for one searched hyperparameter of an arm."""

    low: StrictFloat | None = None
    high: StrictFloat | None = None
    log: StrictBool | None = None
    choices: list[Any] | None = None

    def apply(
        self, param: FloatParam | IntParam | CategoricalParam
    ) -> FloatParam | IntParam | CategoricalParam:
        if isinstance(param, CategoricalParam):
            if self.choices is None:
                raise ValueError(f"{param.name} is categorical: give choices")
            return CategoricalParam(param.name, tuple(self.choices))
        low = param.low if self.low is None else type(param.low)(self.low)
        high = param.high if self.high is None else type(param.high)(self.high)
        log = param.log if self.log is None else self.log
        if not low < high:
            raise ValueError(f"low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ValueError(f"a log range needs low > 0, got {low}")
        # An edge the override moved is a choice, so soft; one it kept keeps its kind.
        edges = (
            param.edges[0] if low == param.low else "soft",
            param.edges[1] if high == param.high else "soft",
        )
        return type(param)(param.name, low, high, log, edges)


# Hyperparameters of the learning-rate schedule that an arm may pin or search like an
# optimizer's own (they are not optimizer arguments: the trial applies them).
WARMUP = FloatParam("warmup_fraction", 0.0, 0.2, edges=("hard", "soft"))
SCHEDULE_PARAMS = {WARMUP.name: WARMUP}
# The first element of torch's ``betas`` pair (Adam's momentum), which an arm may search by
# naming it in ``space`` (opt-in: a study searches it only when asked); the trial writes it
# into ``betas``. Optuna samples scalars, not pairs.
BETA1 = FloatParam("beta1", 0.0, 0.99, edges=("hard", "hard"))


def _takes_betas(spec: OptimizerSpec) -> bool:
    return "betas" in spec.options.model_fields


class Schedule(_Model):
    """The learning-rate schedule every arm trains with, through torch's LambdaLR, stepped once
    per optimizer step: a linear warmup over ``warmup_fraction`` of the steps, then constant,
    cosine or linear decay to ``floor`` x the peak."""

    kind: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_fraction: StrictFloat | RangeOverride = Field(
        default_factory=lambda: RangeOverride(low=WARMUP.low, high=WARMUP.high),
        description="a number (fixed for every arm) or {low, high}: searched per arm "
        "(default: searched in [0, 0.2])",
    )
    floor: StrictFloat = Field(
        0.0, ge=0.0, lt=1.0, description="where the decay ends, as a fraction of the peak lr"
    )

    @field_validator("warmup_fraction")
    @classmethod
    def _fraction(cls, value: float | RangeOverride) -> float | RangeOverride:
        if isinstance(value, RangeOverride):
            value.apply(WARMUP)  # low < high
            if (value.low or 0.0) < 0 or (value.high or 0.0) >= 1:
                raise ValueError("a warmup fraction lies in [0, 1)")
        elif not 0.0 <= value < 1.0:
            raise ValueError("a warmup fraction lies in [0, 1)")
        return value

    def searched(self) -> FloatParam | None:
        """The warmup fraction's range when it is searched, else None (fixed)."""
        if isinstance(self.warmup_fraction, RangeOverride):
            return self.warmup_fraction.apply(WARMUP)  # type: ignore[return-value]
        return None


class ArmSpec(_Model):
    optimizer: str = Field(
        description="a name from the optimizer registry (GET /optimizers)",
        # The installed names, in the OpenAPI schema: generated clients know them.
        json_schema_extra=lambda schema: schema.update(enum=OPTIMIZERS.names()),
    )
    name: str | None = Field(None, description="label of the arm; defaults to the optimizer name")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="hyperparameters pinned, not searched"
    )
    space: dict[str, RangeOverride] = Field(
        default_factory=dict, description="range overrides by name"
    )
    baseline: StrictBool = False
    set_aside: int = Field(
        0,
        ge=0,
        le=1000,
        strict=True,  # a number: not a bool passed for one
        description="the first N searches of this arm ran under an older range (an extension "
        "changed its space): kept and shown, left out of the verdict",
    )

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        OPTIMIZERS.get(name)  # raises with the known names
        return name

    @model_validator(mode="after")
    def _check_space_and_fixed(self) -> ArmSpec:
        spec = OPTIMIZERS.get(self.optimizer)
        for name, value in self.fixed.items():
            if name in SCHEDULE_PARAMS and not (
                isinstance(value, int | float) and 0.0 <= value < 1.0
            ):
                raise ValueError(f"fixed.{name}: a warmup fraction lies in [0, 1)")
        try:  # names and ranges, without torch; the worker builds the optimizer itself
            spec.check(self.optimizer_fixed)
        except ArgumentError as error:
            raise ValueError(f"fixed.{error.argument}: {error.message}") from None
        except ValueError as error:  # an unknown base optimizer of SAM
            raise ValueError(f"fixed.base: {error}") from None
        searchable = {p.name: p for p in spec.space(self.fixed)} | SCHEDULE_PARAMS
        if _takes_betas(spec):
            searchable[BETA1.name] = BETA1
        for name, override in self.space.items():
            if name not in searchable:
                raise ValueError(
                    f"space.{name}: {self.optimizer} searches no {name!r}; it searches {', '.join(searchable)}"
                )
            try:
                override.apply(searchable[name])
            except ValueError as error:
                raise ValueError(f"space.{name}: {error}") from None
        return self

    @property
    def label(self) -> str:
        return self.name or self.optimizer

    @property
    def optimizer_spec(self) -> OptimizerSpec:
        return OPTIMIZERS.get(self.optimizer)

    @property
    def optimizer_fixed(self) -> dict[str, Any]:
        """The pinned values that are the optimizer's arguments (not the schedule's)."""
        return {k: v for k, v in self.fixed.items() if k not in SCHEDULE_PARAMS}

    def searched(
        self, schedule: Schedule | None = None
    ) -> list[FloatParam | IntParam | CategoricalParam]:
        """What this arm's search samples: the registry's ranges at the optimizer's own scale
        (SAM: its base's lr range) and the schedule's searched warmup, narrowed by ``space``,
        without what ``fixed`` pins."""
        params = list(self.optimizer_spec.space(self.optimizer_fixed))
        warmup = schedule.searched() if schedule else None
        if warmup is not None:
            params.append(warmup)
        if BETA1.name in self.space:
            params.append(BETA1)
        return [
            self.space[p.name].apply(p) if p.name in self.space else p
            for p in params
            if p.name not in self.fixed
        ]
