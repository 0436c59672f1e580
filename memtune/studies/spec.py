"""What a study is: a validated spec, loadable from YAML or JSON.

A study compares arms (optimizers) on one task. Each arm runs K independent searches of the
same budget (``budget.searches`` of ``budget.trials_per_search`` trials, each search with its
own seeds); the best config of every search is re-run on fresh seeds (the same for the r-th
search of every arm, never a seed a search trained with), and only those re-runs feed the
verdict, one score per search.
Validation errors name the field (pydantic's ``loc``) and the reason, and list the known
names when an optimizer or a task is unknown.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from memtune.optimizers import (
    OPTIMIZERS,
    ArgumentError,
    CategoricalParam,
    FloatParam,
    IntParam,
    OptimizerSpec,
    UnknownNameError,
)
from memtune.studies import stats
from memtune.studies.code import (
    REFERENCE_PATTERN,
    CodeError,
    TaskCode,
    is_code_reference,
    split_reference,
)
from memtune.studies.tasks import TASKS, Direction, TaskSpec, code_task

__all__ = [
    "ArmSpec",
    "Budget",
    "RangeOverride",
    "Resources",
    "Schedule",
    "Search",
    "SpecError",
    "StudySpec",
    "Tracking",
    "UnknownNameError",
    "attach_code",
    "load_spec",
    "locate",
    "parse_spec",
    "read_spec_file",
    "read_task_code",
]


class SpecError(ValueError):
    """A study spec that cannot run; ``field`` names where, as a dotted path."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class _Model(BaseModel):
    # Numbers and flags are strict where declared (true is not a 1, "0.5" is not a number: the
    # JSON Schema says so); YAML files are read as YAML 1.2 numbers (see _YamlLoader).
    model_config = ConfigDict(extra="forbid")


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


# The defaults of a study's budget, checked by the end-to-end A/A calibration
# (bench/aa_calibration.py, docs/benchmarks.md): six searches per arm reach p < 0.05 after Holm
# over up to 23 comparisons; three trials per search and two seeds per config keep the six-arm
# demo within its time (make demo).
DEFAULT_SEARCHES = 6
DEFAULT_TRIALS_PER_SEARCH = 3
DEFAULT_SEEDS = 2


class Budget(_Model):
    searches: int | None = Field(
        None,
        ge=1,
        le=20,
        strict=True,
        validation_alias=AliasChoices("searches", "repeats"),
        description="K: independent searches per arm, each with its own seeds; the verdict "
        "compares arms over their K search scores. Default: 6 (more where Holm over many "
        "comparisons needs it). 1: the configs are compared, not the optimizers",
    )
    trials_per_search: int = Field(
        DEFAULT_TRIALS_PER_SEARCH,
        ge=1,
        le=10_000,
        strict=True,
        validation_alias=AliasChoices("trials_per_search", "trials_per_arm"),
        description="searched trials of each search, the same for every arm",
    )
    epochs: StrictInt = Field(5, ge=1, le=100_000)
    time_limit_s: StrictFloat | None = Field(
        None, gt=0, description="wall-clock limit of the whole study"
    )
    equalize: Literal["epochs", "gradient_evaluations"] = Field(
        "epochs",
        description="equal epochs for every arm, or equal gradient evaluations: an arm with "
        "k passes per step (SAM: 2) then trains epochs // k epochs",
    )


class Tracking(_Model):
    """Where a study's trials and verdict are also logged (memtune's own results keep all)."""

    mlflow: str | None = Field(
        None,
        max_length=2000,
        description="an MLflow tracking URI (http://host:5000, file:./mlruns): the study as a "
        "parent run, each trial nested; default: MLFLOW_TRACKING_URI where the study runs",
    )
    experiment: str | None = Field(
        None, max_length=500, description="the MLflow experiment (default: the study's name)"
    )
    tensorboard: str | None = Field(
        None,
        max_length=2000,
        description="a directory for TensorBoard event files, one per trial, on the machine "
        "that drives the study",
    )


class Resources(_Model):
    cpu: StrictFloat = Field(1.0, gt=0, description="CPUs per trial")
    gpu: StrictFloat = Field(0.0, ge=0, description="GPU fraction per trial")


# 2: held-out splits, fresh seeds, schedules; 3: K searches per arm, each seeded on its own
# (before: repeat r of every arm trained on seed search_seed + r). Stored specs keep theirs.
SPEC_SCHEMA_VERSION = 3
# Search r of every arm re-runs its config on the study's seeds + r x RERUN_STRIDE: the same
# seeds for the r-th search of every arm (common random numbers), other seeds for each search,
# so that the seeds' luck varies between an arm's searches as the search's does, and enters
# the interval instead of being fixed for the whole study. The seeds a spec names lie below the
# stride; a search's own seed lies in [SEARCH_SEED_FLOOR, 2^31), above every re-run seed.
RERUN_STRIDE = 100_000
SEARCH_SEED_FLOOR = 2**30


@dataclass(frozen=True)
class Search:
    """One of an arm's searches: which, the seed its trials train with, its sampler's seed."""

    arm: str
    index: int  # 0.. per arm; the records' ``repeat``
    seed: int
    sampler_seed: int
    set_aside: bool = False  # ran under an older range of the arm: not in the verdict
    rerun_seeds: tuple[int, ...] = ()  # where its best config is re-run


class StudySpec(_Model):
    schema_version: StrictInt = Field(
        SPEC_SCHEMA_VERSION, ge=1, le=SPEC_SCHEMA_VERSION, description="the spec's schema"
    )
    name: str = Field("study", min_length=1, max_length=200)
    task: str = Field(
        description="a name from the task registry (GET /tasks), or a builder in your code: "
        "path/to/file.py:function or module:function (give its metrics)",
        # The installed names, or a reference: generated clients know both.
        json_schema_extra=lambda schema: schema.update(
            anyOf=[{"enum": TASKS.names()}, {"pattern": REFERENCE_PATTERN}]
        ),
    )
    task_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the task's options; a task from code gets them as a plain mapping",
    )
    metrics: dict[str, Direction] | None = Field(
        None,
        description="a task from code only: every metric its evaluate('val') returns and which "
        "way is better, e.g. {val_loss: min, val_accuracy: max}",
    )
    task_dir: str | None = Field(
        None,
        description="a task from code only: ship this whole directory (relative to the spec) "
        "with the task's file, for the modules it imports; default: the file alone",
    )
    arms: list[ArmSpec] = Field(min_length=1, max_length=32)
    budget: Budget = Field(default_factory=Budget)
    schedule: Schedule = Field(default_factory=Schedule)
    seeds: list[StrictInt] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="seeds of the re-runs of each search's best config, below 100,000: search r "
        "of every arm re-runs on these + r x 100,000 (the same seeds for the r-th search of "
        "every arm, other seeds for each search). Default: 2 (a search's score is its config's "
        "mean over them), from 1 + 2 x search_seed; with one search per arm, the fewest that "
        "can reach p < 0.05 after Holm in the seed-level test",
    )
    metric: str | None = Field(
        None, description="the validation metric the search selects on (default: the task's)"
    )
    mode: Literal["min", "max"] | None = Field(None, description="defaults to the task's mode")
    target: StrictFloat | None = Field(None, description="metric value for time-to-target")
    scheduler: Literal["fifo", "asha"] = "fifo"
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: StrictInt | None = Field(None, ge=1)
    tracking: Tracking | None = Field(None, description="MLflow and TensorBoard, optional")
    search_seed: StrictInt = Field(
        0,
        ge=0,
        le=10_000_000,
        description="from which every search's own seed is derived (the seed its trials train "
        "with and its Optuna sampler's): give each study its own for independent studies",
    )
    smoke: StrictBool = Field(False, description="use the task's smoke size (tests, demos)")
    extensions: int = Field(
        0,
        ge=0,
        strict=True,
        description="how often the study was extended after a verdict (set by the service): "
        "each look after a verdict makes its p-values optimistic",
    )

    # The files of a task from code, read from disk by load_spec (or memtune.run, or the
    # service's worker from its store): never part of the spec's JSON, so a stored or
    # returned spec stays small; they travel beside it to the runner.
    _code: TaskCode | None = PrivateAttr(None)

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        if is_code_reference(name):
            try:
                split_reference(name)
            except CodeError as error:
                raise ValueError(error.message) from None
        else:
            TASKS.get(name)
        return name

    @property
    def task_code(self) -> TaskCode | None:
        """The files of a task from code (None: a registered or installed task)."""
        return self._code

    def with_code(self, code: TaskCode | None) -> StudySpec:
        """This spec with its task's files attached (and its ``task`` naming the builder
        inside them)."""
        spec = self.model_copy(update={"task": code.reference} if code else {})
        spec._code = code
        return spec

    @property
    def from_code(self) -> bool:
        return is_code_reference(self.task)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if self.from_code and not self.metrics:
            raise ValueError(
                "metrics: a task from code declares every metric its evaluate('val') returns "
                "and which way is better, e.g. {val_loss: min, val_accuracy: max}"
            )
        if not self.from_code and self.metrics is not None:
            raise ValueError(f"metrics: {self.task} declares its own metrics (memtune list tasks)")
        if not self.from_code and self.task_dir is not None:
            raise ValueError(
                f"task_dir: {self.task} is registered; only a task from code ships files"
            )
        if self.metrics is not None:
            for name in self.metrics:
                if name.startswith("test_") or name == "train_loss":
                    raise ValueError(
                        f"metrics: {name!r}: declare the validation metrics (val_*); a test "
                        "split's twins (test_*) and train_loss are reported without declaring"
                    )
        task = self.task_spec
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
                " (configs are selected on validation metrics; the test split is reported only)"
            )
        if self.budget.searches is None:
            if not any(self.searched(arm) for arm in self.arms):
                self.budget.searches = 1  # every setting pinned: there is no search to repeat
            else:
                self.budget.searches = max(
                    DEFAULT_SEARCHES, stats.searches_for_power(self.comparisons)
                )
        if self.seeds is None:
            if self.budget.searches > 1:
                count = DEFAULT_SEEDS
            else:  # the seed-level test of config against config needs its own power
                count = stats.seeds_for_power(self.comparisons)
            if self.legacy_seeding:
                first = max(self.search_seeds) + 1
            else:  # studies with other search seeds re-run on other seeds
                first = 1 + count * self.search_seed
                if first + count > RERUN_STRIDE:
                    raise ValueError(
                        f"seeds: the default seeds of search_seed {self.search_seed} would pass "
                        f"{RERUN_STRIDE:,}; give seeds below it"
                    )
            self.seeds = list(range(first, first + count))
        if not self.legacy_seeding and (max(self.seeds) >= RERUN_STRIDE or min(self.seeds) < 0):
            raise ValueError(
                f"seeds: each lies in [0, {RERUN_STRIDE:,}) (search r re-runs on them + r x "
                f"{RERUN_STRIDE:,})"
            )
        reruns = {seed for arm in self.arms for s in self.searches(arm) for seed in s.rerun_seeds}
        shared = sorted(reruns & set(self.search_seeds))
        if shared:
            raise ValueError(
                f"seeds: {', '.join(map(str, shared))} also seed a search (search_seed "
                f"{self.search_seed}); re-runs must use seeds no search trained with"
            )
        return self

    @property
    def legacy_seeding(self) -> bool:
        """Specs before schema 3: search r of every arm trained on seed search_seed + r."""
        return self.schema_version < 3

    @property
    def searches_per_arm(self) -> int:
        """K, the searches per arm that the verdict compares."""
        return self.budget.searches or DEFAULT_SEARCHES  # resolved by the validator

    def searches(self, arm: ArmSpec) -> list[Search]:
        """The arm's searches, those set aside by an extension first, then the K it runs.

        Each search has its own seed, derived from (search_seed, the arm's label, the search's
        index) by a hash, so that the 2K searches of two arms of one optimizer are independent
        and exchangeable, and an extension (more searches or arms) leaves every existing
        search's seed as it was. The seed both trains the search's trials and seeds its TPE.
        Search r re-runs its config on the study's seeds + r x RERUN_STRIDE.
        """
        index = [a.label for a in self.arms].index(arm.label)
        searches = []
        for number in range(arm.set_aside + self.searches_per_arm):
            if self.legacy_seeding:
                seed = self.search_seed + number
                sampler_seed = 1000 * seed + index
            else:
                digest = hashlib.blake2b(
                    f"{self.search_seed}/{arm.label}/{number}".encode(), digest_size=8
                ).digest()
                span = 2**31 - SEARCH_SEED_FLOOR
                seed = sampler_seed = SEARCH_SEED_FLOOR + int.from_bytes(digest) % span
            offset = 0 if self.legacy_seeding else number * RERUN_STRIDE
            searches.append(
                Search(
                    arm.label,
                    number,
                    seed,
                    sampler_seed,
                    set_aside=number < arm.set_aside,
                    rerun_seeds=tuple(s + offset for s in self.seeds or ()),
                )
            )
        return searches

    @property
    def search_seeds(self) -> list[int]:
        """Every seed a search trains with, of every arm."""
        return sorted({search.seed for arm in self.arms for search in self.searches(arm)})

    @property
    def comparisons(self) -> int:
        """How many arms are compared with the baseline (the size of Holm's family)."""
        return len(self.arms) - 1 if self.baseline_arm else 0

    @property
    def headline_metric(self) -> str:
        """What the verdict reports: the test-split twin of the selection metric when the task
        has held-out data, else the selection metric itself."""
        return self.task_spec.test_metric(self.resolved_metric) or self.resolved_metric

    @property
    def warnings(self) -> list[str]:
        """What the spec lets through but the user should know before running it."""
        notes = []
        n, k, searches = len(self.seeds or ()), self.comparisons, self.searches_per_arm
        pinned = [arm.label for arm in self.arms if not self.searched(arm)]
        if k and searches == 1 and len(pinned) == len(self.arms):
            notes.append(
                "budget.searches: nothing is searched, so the verdict compares the pinned "
                "configs over the seeds (config vs config)"
            )
        elif k and searches == 1:
            notes.append(
                "budget.searches: one search per arm, so the verdict compares the configs the "
                "searches happened to find, not the optimizers (config vs config); use "
                f"searches: {DEFAULT_SEARCHES} to compare optimizers"
            )
        elif pinned:
            notes.append(
                f"arms: {', '.join(pinned)} search nothing, so each of their {searches} searches "
                "re-runs the same pinned config on the same seeds; with every arm pinned, use "
                "budget.searches: 1"
            )
        if k and searches == 1:
            if stats.min_attainable_p(n, k) >= stats.ALPHA:
                notes.append(
                    f"seeds: with {n} seeds and {k} comparison(s) the smallest Holm-adjusted p "
                    f"is {stats.min_attainable_p(n, k):.3g}, so no config can be called better "
                    f"or worse (p < {stats.ALPHA}); use at least {stats.seeds_for_power(k)} seeds"
                )
        elif k and stats.min_attainable_rank_sum_p(searches, k) >= stats.ALPHA:
            notes.append(
                f"budget.searches: with {searches} searches per arm and {k} comparison(s) the "
                f"smallest Holm-adjusted p is {stats.min_attainable_rank_sum_p(searches, k):.3g}, "
                f"so no arm can be called better or worse (p < {stats.ALPHA}); use at least "
                f"{stats.searches_for_power(k)} searches"
            )
        if self.extensions:
            notes.append(
                f"extensions: extended {self.extensions} time(s) after a verdict; deciding to "
                "extend after seeing a verdict (optional stopping) lifts the chance of a false "
                "label above 5%, so read these p-values as optimistic"
            )
        if not self.task_spec.held_out:
            notes.append(
                f"task: {self.task} has no held-out data; the verdict reports "
                f"{self.resolved_metric} of the seed re-runs"
            )
        return notes

    def searched(self, arm: ArmSpec) -> list[FloatParam | IntParam | CategoricalParam]:
        """Everything ``arm``'s search samples, the schedule's warmup included."""
        return arm.searched(self.schedule)

    def warmup_fraction(self, arm: ArmSpec) -> float | None:
        """The arm's pinned warmup fraction, or the study's fixed one; None when searched."""
        if "warmup_fraction" in arm.fixed:
            return float(arm.fixed["warmup_fraction"])
        fraction = self.schedule.warmup_fraction
        return None if isinstance(fraction, RangeOverride) else float(fraction)

    def trial_schedule(self, arm: ArmSpec) -> dict[str, Any]:
        """The lr schedule a trial of ``arm`` trains with (the warmup fraction None when its
        search samples it)."""
        return {
            "kind": self.schedule.kind,
            "floor": self.schedule.floor,
            "warmup_fraction": self.warmup_fraction(arm),
        }

    def arm_epochs(self, arm: ArmSpec) -> int:
        """Epochs of this arm's trials: the budget's, or fewer at equal gradient evaluations."""
        if self.budget.equalize == "epochs":
            return self.budget.epochs
        return max(1, self.budget.epochs // arm.optimizer_spec.passes_per_step)

    @property
    def task_spec(self) -> TaskSpec:
        if self.from_code:
            return code_task(self.task, self.metrics or {}, self.metric)
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
        """Every trial the study plans: per search, its searched trials and its seed re-runs
        (searches set aside by an extension included: they ran)."""
        per_search = self.budget.trials_per_search + len(self.seeds or ())
        return sum(len(self.searches(arm)) for arm in self.arms) * per_search


def _format_errors(error: ValidationError) -> str:
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or '(spec)'}: {e['msg']}" for e in error.errors()
    )


def locate(error: Mapping[str, Any]) -> tuple[list[str], str]:
    """Where one of pydantic's errors of a spec points, and why: whole-model checks prefix
    their message with the field they blame ("fixed.lr: ..."), which moves into the path."""
    location = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    blamed = re.match(r"^([A-Za-z_][\w.]*): (.*)$", message, flags=re.DOTALL)
    if error["type"] == "value_error" and blamed:
        location += blamed[1].split(".")
        message = blamed[2]
    return location, message


def parse_spec(data: Mapping[str, Any]) -> StudySpec:
    """A StudySpec from a dict; raises SpecError naming the first bad field."""
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        location, message = locate(error.errors()[0])
        raise SpecError(".".join(location) or "spec", message) from None


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but numbers as YAML 1.2 reads them: ``1e-5`` is a float (YAML 1.1,
    PyYAML's, wants ``1.0e-5`` and reads ``1e-5`` as a string, which the spec refuses)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML or JSON spec file holds, unvalidated. Raises SpecError naming
    ``spec`` with the line and column for a file that is not YAML or JSON (or not a mapping),
    FileNotFoundError for one that is not there."""
    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_YamlLoader)
    except json.JSONDecodeError as error:
        raise SpecError(
            "spec", f"not JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SpecError("spec", f"not YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise SpecError("spec", f"{path} must hold a mapping, not {type(data).__name__}")
    return data


def load_spec(path: str | Path) -> StudySpec:
    """A StudySpec from a YAML or JSON file; a task from code is read from disk now (relative
    paths from the spec's directory) and travels with the spec (``spec.task_code``).

    Raises SpecError naming the field, FileNotFoundError for a spec that is not there."""
    spec = parse_spec(read_spec_file(path))
    return attach_code(spec, Path(path).resolve().parent)


def read_task_code(task: str, base: Path, directory: str | None = None) -> TaskCode | None:
    """The files a spec's ``task`` names (TaskCode.read), its errors as SpecError."""
    try:
        return TaskCode.read(task, base, directory=directory)
    except CodeError as error:
        raise SpecError(error.field, error.message) from None


def attach_code(spec: StudySpec, base: Path) -> StudySpec:
    """``spec`` with the files of its task from code read from disk, relative to ``base``."""
    if not spec.from_code or spec.task_code is not None:
        return spec
    return spec.with_code(read_task_code(spec.task, base, spec.task_dir))
