"""The tables. memtune's own carry the ``memtune_`` prefix: Optuna's RDB storage shares the
database and owns names such as ``studies`` and ``trials``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from memtune.service.store.types import FloatSafeJSON
from memtune.studies.records import Phase, StudyStatus, TrialState


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(kind: type, length: int = 20) -> Enum:
    """A Python enum stored as its value in a VARCHAR (the columns' type since 0001)."""
    return Enum(
        kind,
        native_enum=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {
        dict[str, Any]: FloatSafeJSON,
        datetime: DateTime(timezone=True),
    }


class Owner(Base):
    __tablename__ = "memtune_owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "memtune_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("memtune_owners.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(
        String(64), unique=True
    )  # sha256 hex; the key is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # to tell keys apart in listings
    # What the key may do beyond its owner's studies: "code" submits a task from code, which
    # the workers import and run (services.SCOPES).
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    owner: Mapped[Owner] = relationship()


class Study(Base):
    __tablename__ = "memtune_studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("memtune_owners.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(100), index=True)
    spec: Mapped[dict[str, Any]]
    status: Mapped[StudyStatus] = mapped_column(
        _enum(StudyStatus), default=StudyStatus.QUEUED, index=True
    )
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    total_trials: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[dict[str, Any] | None]
    # GET /studies/{id}/curves as it was when the study completed: an ended study's curves no
    # longer change, and reading 10,000 epochs again for every first look is most of the
    # dashboard's wait (bench/dashboard_load.py)
    curves: Mapped[dict[str, Any] | None]
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # A task from code: its files (a zip, memtune.studies.code.TaskCode), which only the
    # workers extract and import; never returned by the API.
    code: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    worker_id: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    arms: Mapped[list[Arm]] = relationship(
        back_populates="study", cascade="all, delete-orphan", order_by="Arm.position"
    )


class Arm(Base):
    __tablename__ = "memtune_arms"
    __table_args__ = (UniqueConstraint("study_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("memtune_studies.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(200))
    optimizer: Mapped[str] = mapped_column(String(100), index=True)
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)

    study: Mapped[Study] = relationship(back_populates="arms")


class Trial(Base):
    __tablename__ = "memtune_trials"
    __table_args__ = (UniqueConstraint("study_id", "tune_trial_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(
        ForeignKey("memtune_studies.id", ondelete="CASCADE"), index=True
    )
    arm: Mapped[str] = mapped_column(String(200))
    tune_trial_id: Mapped[str] = mapped_column(String(100))
    phase: Mapped[Phase] = mapped_column(_enum(Phase, length=10))
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]]
    state: Mapped[TrialState] = mapped_column(_enum(TrialState), default=TrialState.RUNNING)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    repeat: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Restarts after its Ray node died (a spot reclaim): not failures (attempt counts both).
    node_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    best_metric: Mapped[float | None] = mapped_column(Float)
    final_metric: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any] | None]  # the cost figures of the last epoch
    error: Mapped[str | None] = mapped_column(Text)  # its last line
    traceback: Mapped[str | None] = mapped_column(Text)  # all of it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Metric(Base):
    __tablename__ = "memtune_metrics"
    __table_args__ = (
        UniqueConstraint("trial_id", "epoch", "attempt"),  # a retried report never duplicates
        Index("ix_memtune_metrics_trial", "trial_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("memtune_trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Node(Base):
    """A Ray node as a worker last saw it: what it can run (the inventory the API checks)."""

    __tablename__ = "memtune_nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(String(100), unique=True)
    worker_id: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200))
    cpus: Mapped[float] = mapped_column(Float)
    gpus: Mapped[float] = mapped_column(Float)
    tasks: Mapped[list[str]] = mapped_column(JSON)
    optimizers: Mapped[list[str]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
