"""The study spec itself: the task, its arms, budget, schedule and seeds, validated as a
whole, and each arm's searches with their seeds. Every search has its own seed, derived by a
hash; its best config is re-run on the study's seeds shifted by ``RERUN_STRIDE`` per search
(the same for the r-th search of every arm), below ``SEARCH_SEED_FLOOR`` where search seeds lie.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from memtune.optimizers import CategoricalParam, FloatParam, IntParam
from memtune.studies import stats
from memtune.studies.code import (
    REFERENCE_PATTERN,
    CodeError,
    TaskCode,
    is_code_reference,
    split_reference,
)
from memtune.studies.spec._base import _Model
from memtune.studies.spec.arms import ArmSpec, RangeOverride, Schedule
from memtune.studies.spec.budget import DEFAULT_SEARCHES, DEFAULT_SEEDS, Budget, Resources, Tracking
from memtune.studies.tasks import TASKS, Direction, TaskSpec, code_task

__all__ = ["RERUN_STRIDE", "SEARCH_SEED_FLOOR", "SPEC_SCHEMA_VERSION", "Search", "StudySpec"]


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
