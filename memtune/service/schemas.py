"""What the API returns: schema families per resource, separate from the ORM rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Base64Bytes, BaseModel, ConfigDict, Field

from memtune.studies.code import CODE_LIMIT_BYTES
from memtune.studies.nonfinite import JsonObject, Number
from memtune.studies.records import Phase, StudyStatus, TrialState
from memtune.studies.spec import ArmSpec, RangeOverride, StudySpec

# Every number a response carries goes out through memtune.studies.nonfinite (Number,
# JsonObject): NaN and +-inf as the strings "nan", "inf", "-inf".


def _as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; memtune stores UTC only."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


class ErrorDetail(BaseModel):
    loc: list[str] = Field(description="where: 'body', 'query', 'path' or 'header', then names")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error memtune's API answers."""

    detail: list[ErrorDetail]


class StudySubmission(StudySpec):
    """A study spec, and for a task from code its files (``memtune submit`` sends them)."""

    code: Base64Bytes | None = Field(
        None,
        max_length=CODE_LIMIT_BYTES,  # of the archive (pydantic checks it decoded)
        description="a task from code: its files as a zip archive, base64-encoded, paths "
        "relative to the archive's root (task names the builder in it: my_task.py:build). "
        "Needs an API key with the code scope; the workers import it, the API never does",
    )

    def spec(self) -> StudySpec:
        """The spec alone, as it is stored and returned."""
        return StudySpec.model_validate(self.model_dump(exclude={"code"}))


class ArmProgress(BaseModel):
    arm: str
    optimizer: str
    baseline: bool
    done: int = Field(description="trials of this arm that ended (search and seed runs)")
    total: int
    best: Number | None = Field(None, description="best metric so far, any epoch")


class StudyPublic(BaseModel):
    id: int
    name: str
    task: str
    owner: str | None
    status: StudyStatus
    cancel_requested: bool
    metric: str
    mode: str
    trials_done: int
    trials_total: int
    progress: list[ArmProgress]
    error: str | None
    warnings: list[str] = Field(
        description="what the spec lets through but you should know (say, too few seeds to "
        "call any arm better: add seeds, or extend the study later)"
    )
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    spec: JsonObject
    spec_schema_version: int = Field(
        description="the spec's schema: 2 since held-out splits and fresh seeds; 1 before"
    )


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int = Field(description="all studies matching the filters, across pages")


class TrialPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the ORM row

    id: int
    study_id: int
    arm: str
    phase: Phase
    seed: int
    config: JsonObject
    state: TrialState
    attempt: int
    node_losses: int = Field(
        0, description="restarts after its Ray node died (spot reclaim): not failures"
    )
    epochs_done: int
    best_metric: Number | None
    final_metric: Number | None = Field(
        description="the last epoch's metric; 'inf' or '-inf' (the worst value) if it diverged"
    )
    summary: JsonObject | None
    error: str | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int = Field(description="all the study's trials, across pages")


class EpochMetrics(BaseModel):
    epoch: int
    attempt: int
    values: JsonObject = Field(
        description="non-finite numbers come back as the strings 'nan', 'inf', '-inf'"
    )


class TrialDetail(TrialPublic):
    history: list[EpochMetrics]
    traceback: str | None = Field(None, description="the full error of a failed trial")


class OptimizerPublic(BaseModel):
    name: str
    origin: str = Field(description="the installed distribution that registered it")
    summary: str
    defaults: dict[str, Any]
    search_space: list[dict[str, Any]]
    reduces_to: str | None
    passes_per_step: int
    needs_closure: bool
    state_bytes_per_param: float
    source: str


class TaskPublic(BaseModel):
    name: str
    origin: str = Field(description="the installed distribution that registered it")
    summary: str
    metric: str
    mode: str
    metrics: list[str]
    directions: dict[str, str] = Field(description="per metric: 'min' or 'max' is better")
    reports: str = Field(description="what a verdict reports: the test twin of the metric")
    data: str = Field(description="where the data comes from and how it is split")
    options: dict[str, Any] = Field(description="JSON schema of the task's options")


class PluginErrorPublic(BaseModel):
    """An installed plugin that failed to load: its entry point, where from, and why."""

    group: str
    name: str
    origin: str
    message: str


class OptimizersPublic(BaseModel):
    data: list[OptimizerPublic]
    count: int
    errors: list[PluginErrorPublic] = Field(description="plugins that failed to load")


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int
    errors: list[PluginErrorPublic] = Field(description="plugins that failed to load")


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable (503) when a dependency does not answer")
    database: str
    open_mode: bool = Field(description="no API keys: open on the loopback interface only")
    down: list[str] = Field(
        default_factory=list, description="the dependencies that do not answer (database)"
    )


class StudyExtension(BaseModel):
    """What a completed study is extended with: more seeds for every search, new arms (each
    with the study's budget), more searches per arm, and/or other ranges for an arm's search
    (its searches under the old range are set aside: kept and shown, not compared)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # at least one of them is given
            "anyOf": [
                {"required": ["seeds"], "properties": {"seeds": {"minItems": 1}}},
                {"required": ["arms"], "properties": {"arms": {"minItems": 1}}},
                {"required": ["searches"]},
                {"required": ["space"], "properties": {"space": {"minProperties": 1}}},
            ]
        },
    )

    seeds: list[int] = Field(default_factory=list, max_length=1000)
    arms: list[ArmSpec] = Field(default_factory=list, max_length=32)
    searches: int | None = Field(
        None,
        ge=1,
        le=20,
        strict=True,
        description="the searches per arm from now on (K): at least today's",
    )
    space: dict[str, dict[str, RangeOverride]] = Field(
        default_factory=dict,
        description="per arm label, range overrides by hyperparameter (as an arm's space): the "
        "arm searches anew, K times, and its earlier searches are set aside",
    )


class SearchPoint(BaseModel):
    """One search trial, as the per-arm search plots show it."""

    trial_id: int
    number: int = Field(description="its order within the arm's search, from 1")
    config: JsonObject
    state: TrialState
    final: Number | None = Field(description="the last epoch's metric (worst value if diverged)")
    best: Number | None


class TrialCurve(BaseModel):
    trial_id: int
    values: list[Number | None] = Field(description="the metric per epoch, from epoch 1")
    time_s: list[Number | None] = Field(description="cumulative training seconds per epoch")


class ArmCurves(BaseModel):
    arm: str
    optimizer: str
    baseline: bool
    seed_runs: int = Field(description="finished seed re-runs behind the mean and band")
    epochs: list[int]
    mean: list[Number | None] = Field(description="the metric per epoch, mean over seed runs")
    ci_low: list[Number | None] = Field(description="95% t-interval of that mean, per epoch")
    ci_high: list[Number | None]
    time_s: list[Number | None] = Field(description="mean cumulative training seconds")
    mean_beta: list[Number | None] | None = Field(
        None, description="adaptive-memory arms: the mean beta per epoch over seed runs"
    )
    search_curves: list[TrialCurve] = Field(
        description="at most `search_curves` search trials of this arm, evenly sampled"
    )
    search: list[SearchPoint] = Field(description="every search trial of this arm, in order")


class StudyCurves(BaseModel):
    """What the dashboard's study page plots: aggregates per arm and epoch, not every row."""

    study_id: int
    metric: str
    mode: str
    arms: list[ArmCurves]
