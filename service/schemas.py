"""What the API returns: schema families per resource, separate from the ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ArmProgress(BaseModel):
    arm: str
    optimizer: str
    baseline: bool
    done: int = Field(description="trials of this arm that ended (search and seed runs)")
    total: int
    best: float | None = Field(None, description="best metric so far, any epoch")


class StudyPublic(BaseModel):
    id: int
    name: str
    task: str
    owner: str | None
    status: str = Field(description="queued, running, completed, failed or cancelled")
    cancel_requested: bool
    metric: str
    mode: str
    trials_done: int
    trials_total: int
    progress: list[ArmProgress]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    spec: dict[str, Any]


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int = Field(description="all studies matching the filters, across pages")


class TrialPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the ORM row

    id: int
    study_id: int
    arm: str
    phase: str
    seed: int
    config: dict[str, Any]
    state: str
    attempt: int
    epochs_done: int
    best_metric: float | None
    final_metric: float | None
    summary: dict[str, Any] | None
    error: str | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class EpochMetrics(BaseModel):
    epoch: int
    attempt: int
    values: dict[str, Any] = Field(
        description="non-finite numbers come back as the strings 'nan', 'inf', '-inf'"
    )


class TrialDetail(TrialPublic):
    history: list[EpochMetrics]


class OptimizerPublic(BaseModel):
    name: str
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
    summary: str
    metric: str
    mode: str
    metrics: list[str]
    options: dict[str, Any] = Field(description="JSON schema of the task's options")


class Health(BaseModel):
    status: str
    database: str
    open_mode: bool = Field(description="no API keys: open on the loopback interface only")


class ApiKeyCreated(BaseModel):
    owner: str
    key: str = Field(description="shown once; only its hash is stored")
