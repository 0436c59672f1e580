"""What a study is: a validated spec, loadable from YAML or JSON.

A study compares arms (optimizers) on one task: each arm gets the same search budget, the best
config of each arm is re-run on the same seeds, and only those re-runs feed the verdict.
Validation errors name the field (pydantic's ``loc``) and the reason, and list the known
names when an optimizer or a task is unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memtune.optimizers import (
    OPTIMIZERS,
    ArgumentError,
    CategoricalParam,
    FloatParam,
    IntParam,
    OptimizerSpec,
    UnknownNameError,
)
from memtune.studies.tasks import TASKS, TaskSpec

__all__ = [
    "ArmSpec",
    "Budget",
    "RangeOverride",
    "Resources",
    "SpecError",
    "StudySpec",
    "UnknownNameError",
    "load_spec",
    "parse_spec",
]


class SpecError(ValueError):
    """A study spec that cannot run; ``field`` names where, as a dotted path."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeOverride(_Model):
    """A narrower (or wider) range for one searched hyperparameter of an arm."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None
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
        return type(param)(param.name, low, high, log)


class ArmSpec(_Model):
    optimizer: str = Field(description="a name from the optimizer registry (GET /optimizers)")
    name: str | None = Field(None, description="label of the arm; defaults to the optimizer name")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="hyperparameters pinned, not searched"
    )
    space: dict[str, RangeOverride] = Field(
        default_factory=dict, description="range overrides by name"
    )
    baseline: bool = False

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        OPTIMIZERS.get(name)  # raises with the known names
        return name

    @model_validator(mode="after")
    def _check_space_and_fixed(self) -> ArmSpec:
        spec = OPTIMIZERS.get(self.optimizer)
        searchable = {p.name: p for p in spec.search_space}
        for name, override in self.space.items():
            if name not in searchable:
                raise ValueError(
                    f"space.{name}: {self.optimizer} searches no {name!r}; it searches {', '.join(searchable)}"
                )
            try:
                override.apply(searchable[name])
            except ValueError as error:
                raise ValueError(f"space.{name}: {error}") from None
        try:  # names and ranges, without torch; the worker builds the optimizer itself
            spec.check(self.fixed)
        except ArgumentError as error:
            raise ValueError(f"fixed.{error.argument}: {error.message}") from None
        except ValueError as error:  # an unknown base optimizer of SAM
            raise ValueError(f"fixed.base: {error}") from None
        return self

    @property
    def label(self) -> str:
        return self.name or self.optimizer

    @property
    def optimizer_spec(self) -> OptimizerSpec:
        return OPTIMIZERS.get(self.optimizer)

    def search_space(self) -> list[FloatParam | IntParam | CategoricalParam]:
        params = {p.name: p for p in self.optimizer_spec.search_space}
        return [override.apply(params[name]) for name, override in self.space.items()]


class Budget(_Model):
    trials_per_arm: int = Field(
        8, ge=1, le=10_000, description="searched trials, the same for every arm"
    )
    epochs: int = Field(5, ge=1, le=100_000)
    time_limit_s: float | None = Field(
        None, gt=0, description="wall-clock limit of the whole study"
    )


class Resources(_Model):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial")
    gpu: float = Field(0.0, ge=0, description="GPU fraction per trial")


class StudySpec(_Model):
    name: str = Field("study", min_length=1, max_length=200)
    task: str = Field(description="a name from the task registry (GET /tasks)")
    task_options: dict[str, Any] = Field(default_factory=dict)
    arms: list[ArmSpec] = Field(min_length=1, max_length=32)
    budget: Budget = Field(default_factory=Budget)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=1000)
    metric: str | None = Field(None, description="defaults to the task's metric")
    mode: Literal["min", "max"] | None = Field(None, description="defaults to the task's mode")
    target: float | None = Field(None, description="metric value for time-to-target")
    scheduler: Literal["fifo", "asha"] = "fifo"
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(None, ge=1)
    search_seed: int = Field(
        0, description="seed of the Optuna samplers and of the searched trials"
    )
    smoke: bool = Field(False, description="use the task's smoke size (tests, demos)")

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        TASKS.get(name)
        return name

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        task = TASKS.get(self.task)
        try:
            task.parse_options(self.task_options, smoke=self.smoke)
        except ValidationError as error:
            details = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"task_options: {details}") from None
        labels = [arm.label for arm in self.arms]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"arms: names must be distinct; give arms a name (repeated: {', '.join(duplicates)})"
            )
        if sum(arm.baseline for arm in self.arms) > 1:
            raise ValueError("arms: at most one arm may be the baseline")
        if self.metric is not None and self.metric not in task.reported:
            raise ValueError(
                f"metric: {self.task} reports {', '.join(task.reported)}, not {self.metric!r}"
            )
        return self

    @property
    def task_spec(self) -> TaskSpec:
        return TASKS.get(self.task)

    @property
    def resolved_metric(self) -> str:
        return self.metric or self.task_spec.metric

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        """``mode`` if given, else the direction the task declares for the metric."""
        return self.mode or self.task_spec.direction(self.resolved_metric)

    @property
    def baseline_arm(self) -> ArmSpec | None:
        return next((arm for arm in self.arms if arm.baseline), None)

    @property
    def total_trials(self) -> int:
        return len(self.arms) * (self.budget.trials_per_arm + len(self.seeds))


def _format_errors(error: ValidationError) -> str:
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or '(spec)'}: {e['msg']}" for e in error.errors()
    )


def parse_spec(data: Mapping[str, Any]) -> StudySpec:
    """A StudySpec from a dict; raises SpecError naming the first bad field."""
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        location, message = (
            [str(part) for part in first["loc"]],
            first["msg"].removeprefix("Value error, "),
        )
        # Whole-model checks prefix their message with the field they blame: move it to the path.
        blamed = re.match(r"^([A-Za-z_][\w.]*): (.*)$", message, flags=re.DOTALL)
        if first["type"] == "value_error" and blamed:
            location.append(blamed[1])
            message = blamed[2]
        raise SpecError(".".join(location) or "spec", message) from None


def load_spec(path: str | Path) -> StudySpec:
    """A StudySpec from a YAML or JSON file."""
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SpecError("spec", f"{path} must hold a mapping, not {type(data).__name__}")
    return parse_spec(data)
