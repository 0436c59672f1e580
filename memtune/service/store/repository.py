"""Named queries over one session. The service layer calls these; no SQL lives anywhere else."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from sqlalchemy import String, case, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from memtune.service.store.models import ApiKey, Arm, Metric, Node, Owner, Study, Trial, utcnow
from memtune.studies.nonfinite import from_store
from memtune.studies.records import StudyStatus, TrialState


def _json_scalar(dialect: str, key: str) -> Any:
    """One key of a metric row's JSON, as the database's own value: a number on SQLite, text
    on PostgreSQL (exact: its JSON keeps the digits written), a tagged non-finite value
    (``{"$float": "nan"}``) as its JSON text on both."""
    if dialect == "sqlite":
        return func.json_extract(Metric.values.expression, f'$."{key}"')
    return Metric.values.expression.op("->>", return_type=String())(literal(key, String()))


def _scalar(value: Any) -> Any:
    """What :func:`_json_scalar` read, as the number it was stored as."""
    if not isinstance(value, str):
        return value  # a number, or None where the epoch lacks the key
    if value.startswith("{"):
        return from_store(json.loads(value))
    return float(value)


class NotFound(LookupError):
    """No such row, or not the caller's."""


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- owners and keys -------------------------------------------------------------------

    def owner_named(self, name: str, *, create: bool = False) -> Owner | None:
        owner = self.session.scalar(select(Owner).where(Owner.name == name))
        if owner is None and create:
            owner = Owner(name=name)
            self.session.add(owner)
            self.session.flush()
        return owner

    def add_api_key(
        self, owner: Owner, key_hash: str, prefix: str, scopes: list[str] | None = None
    ) -> ApiKey:
        key = ApiKey(owner_id=owner.id, key_hash=key_hash, prefix=prefix, scopes=scopes or [])
        self.session.add(key)
        self.session.flush()
        return key

    def key_and_owner(self, key_hash: str) -> tuple[ApiKey, Owner] | None:
        """An active key and its owner (the key's scopes say what it may do)."""
        row = self.session.execute(
            select(ApiKey, Owner)
            .join(Owner, ApiKey.owner_id == Owner.id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        ).first()
        return (row[0], row[1]) if row else None

    def has_api_keys(self) -> bool:
        return (
            self.session.scalar(select(func.count(ApiKey.id)).where(ApiKey.revoked_at.is_(None)))
            > 0
        )

    # -- studies ---------------------------------------------------------------------------

    def add_study(
        self,
        *,
        owner: Owner,
        spec: dict[str, Any],
        arms: list[dict[str, Any]],
        total_trials: int,
        warnings: list[str] | None = None,
        code: bytes | None = None,
    ) -> Study:
        study = Study(
            code=code,
            warnings=list(warnings or ()),
            owner_id=owner.id,
            name=spec["name"],
            task=spec["task"],
            spec=spec,
            status=StudyStatus.QUEUED,
            cancel_requested=False,
            total_trials=total_trials,
            attempt=0,
            arms=[Arm(position=i, **arm) for i, arm in enumerate(arms)],
        )
        self.session.add(study)
        self.session.flush()
        return study

    def find_study(self, study_id: int, owner_id: int | None) -> Study:
        """The study, if it exists and belongs to ``owner_id`` (None: an admin, any owner)."""
        query = select(Study).where(Study.id == study_id)
        if owner_id is not None:
            query = query.where(Study.owner_id == owner_id)
        study = self.session.scalar(query)
        if study is None:
            raise NotFound(f"study {study_id}")
        return study

    def list_studies(
        self,
        *,
        owner_id: int | None,
        status: str | None = None,
        task: str | None = None,
        optimizer: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[Study], int]:
        query = select(Study)
        if owner_id is not None:
            query = query.where(Study.owner_id == owner_id)
        if status:
            query = query.where(Study.status == status)
        if task:
            query = query.where(Study.task == task)
        if optimizer:
            query = query.where(
                Study.id.in_(select(Arm.study_id).where(Arm.optimizer == optimizer))
            )
        count = self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = self.session.scalars(
            query.order_by(Study.created_at.desc(), Study.id.desc()).offset(offset).limit(limit)
        )
        return list(rows), count

    def claim_study(self, worker_id: str, lease_s: float) -> Study | None:
        """Takes the oldest queued study, or a running one whose worker's lease ran out.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``, so workers never wait on each other.
        SQLite: a conditional update that only one writer can win.
        """
        now = utcnow()
        claimable = or_(
            Study.status == StudyStatus.QUEUED,
            (Study.status == StudyStatus.RUNNING) & (Study.lease_expires_at < now),
        )
        candidate = select(Study.id).where(claimable).order_by(Study.created_at, Study.id).limit(1)
        if self.session.get_bind().dialect.name == "postgresql":
            candidate = candidate.with_for_update(skip_locked=True)
        study_id = self.session.scalar(candidate)
        if study_id is None:
            return None
        claimed = self.session.execute(
            update(Study)
            .where(Study.id == study_id, claimable)
            .values(
                status=StudyStatus.RUNNING,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                attempt=Study.attempt + 1,
            )
        )
        if claimed.rowcount != 1:
            return None
        self.session.flush()
        study = self.session.get(Study, study_id)
        self.session.refresh(study)
        return study

    def renew_lease(self, study_id: int, worker_id: str, lease_s: float) -> tuple[bool, bool]:
        """Extends the lease while the study runs; returns (still ours, cancel requested).

        A study this worker has just finished is still ours; one claimed by another is not.
        """
        self.session.execute(
            update(Study)
            .where(
                Study.id == study_id,
                Study.worker_id == worker_id,
                Study.status == StudyStatus.RUNNING,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        owner, cancel = self.session.execute(
            select(Study.worker_id, Study.cancel_requested).where(Study.id == study_id)
        ).one()
        return owner == worker_id, bool(cancel)

    def finish_study(
        self,
        study_id: int,
        worker_id: str,
        *,
        status: StudyStatus,
        verdict: dict | None = None,
        error: str | None = None,
    ) -> bool:
        result = self.session.execute(
            update(Study)
            .where(Study.id == study_id, Study.worker_id == worker_id)
            .values(
                status=status,
                verdict=verdict,
                error=error,
                finished_at=utcnow(),
                lease_expires_at=None,
            )
        )
        return result.rowcount == 1

    def forget_trials(self, study_id: int, *, keep: frozenset[str] = frozenset()) -> None:
        """Deletes the study's trials (and their epochs) but those whose Tune id is in
        ``keep``: what an extension reuses."""
        for trial in self.session.scalars(select(Trial).where(Trial.study_id == study_id)):
            if trial.tune_trial_id not in keep:
                self.session.delete(trial)
        self.session.flush()

    def reopen_study(
        self,
        study: Study,
        *,
        spec: dict[str, Any],
        arms: list[dict[str, Any]],
        total_trials: int,
        warnings: list[str],
    ) -> None:
        """A completed study queued again with more seeds or arms; its verdict stays until
        the worker replaces it (and marks the claim as an extension)."""
        known = {arm.label for arm in study.arms}
        position = len(study.arms)
        for arm in arms:
            if arm["label"] not in known:
                study.arms.append(Arm(position=position, **arm))
                position += 1
        study.spec, study.total_trials, study.warnings = spec, total_trials, warnings
        study.status, study.cancel_requested = StudyStatus.QUEUED, False
        study.error, study.finished_at, study.worker_id = None, None, None
        study.curves = None  # the extension adds trials: its curves are read live again
        self.session.flush()

    # -- trials and metrics ----------------------------------------------------------------

    def upsert_trial(self, study_id: int, tune_trial_id: str, **values: Any) -> Trial:
        trial = self.session.scalar(
            select(Trial).where(Trial.study_id == study_id, Trial.tune_trial_id == tune_trial_id)
        )
        if trial is None:
            trial = Trial(study_id=study_id, tune_trial_id=tune_trial_id, **values)
            self.session.add(trial)
        else:
            for key, value in values.items():
                setattr(trial, key, value)
        self.session.flush()
        return trial

    def add_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Inserts per-epoch rows; a (trial, epoch, attempt) already stored is left as it is."""
        if not rows:
            return
        dialect = self.session.get_bind().dialect.name
        insert = (postgresql if dialect == "postgresql" else sqlite).insert
        now = utcnow()
        stamped = [{"created_at": now, **row} for row in rows]
        # One cached statement, executed for many rows (SQLAlchemy batches them): a multi-VALUES
        # statement would be compiled anew for every batch size.
        statement = insert(Metric).on_conflict_do_nothing(
            index_elements=["trial_id", "epoch", "attempt"]
        )
        self.session.execute(statement, stamped)

    def trials_of(self, study_id: int) -> list[Trial]:
        return list(
            self.session.scalars(select(Trial).where(Trial.study_id == study_id).order_by(Trial.id))
        )

    def find_trial(self, trial_id: int, owner_id: int | None) -> Trial:
        query = select(Trial).join(Study, Study.id == Trial.study_id).where(Trial.id == trial_id)
        if owner_id is not None:
            query = query.where(Study.owner_id == owner_id)
        trial = self.session.scalar(query)
        if trial is None:
            raise NotFound(f"trial {trial_id}")
        return trial

    def metrics_of(self, trial_ids: list[int]) -> dict[int, list[Metric]]:
        """Per trial, its epochs in order, the latest attempt's row for each epoch."""
        history: dict[int, dict[int, Metric]] = {i: {} for i in trial_ids}
        if not trial_ids:
            return {}
        rows = self.session.scalars(
            select(Metric)
            .where(Metric.trial_id.in_(trial_ids))
            .order_by(Metric.trial_id, Metric.epoch, Metric.attempt)
        )
        for row in rows:
            history[row.trial_id][row.epoch] = row
        return {
            trial_id: [epochs[e] for e in sorted(epochs)] for trial_id, epochs in history.items()
        }

    def metric_values(
        self, trial_ids: list[int], keys: list[str]
    ) -> dict[int, list[dict[str, Any]]]:
        """Per trial, the named numeric values of its epochs in order (the latest attempt of
        each), read as plain rows: what aggregates need, without an ORM object per epoch.

        On SQLite and PostgreSQL the database picks the keys out of each row's JSON, so an
        epoch's other values are never decoded (a several-fold faster read of the
        dashboard's curves: docs/benchmarks.md).
        """
        if not trial_ids:
            return {}
        dialect = self.session.get_bind().dialect.name
        picked = dialect in ("sqlite", "postgresql")  # else the whole JSON, decoded here
        columns = [_json_scalar(dialect, key) for key in keys] if picked else [Metric.values]
        rows = self.session.execute(
            select(Metric.trial_id, Metric.epoch, *columns)
            .where(Metric.trial_id.in_(trial_ids))
            .order_by(Metric.trial_id, Metric.epoch, Metric.attempt)
        )
        history: dict[int, dict[int, dict[str, Any]]] = {i: {} for i in trial_ids}
        for trial_id, epoch, *values in rows:
            if picked:
                found = {key: _scalar(value) for key, value in zip(keys, values, strict=True)}
            else:
                found = {key: values[0].get(key) for key in keys}
            history[trial_id][epoch] = {**found, "epoch": epoch}
        return {
            trial_id: [epochs[e] for e in sorted(epochs)] for trial_id, epochs in history.items()
        }

    def progress(self, study_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
        """Per study and arm, in one query: trials done, and the lowest and highest best metric
        so far (the caller picks by the study's mode)."""
        found: dict[int, dict[str, dict[str, Any]]] = {i: {} for i in study_ids}
        if not study_ids:
            return found
        done = func.sum(case((Trial.state.in_([s for s in TrialState if s.ended]), 1), else_=0))
        rows = self.session.execute(
            select(
                Trial.study_id,
                Trial.arm,
                done,
                func.min(Trial.best_metric),
                func.max(Trial.best_metric),
            )
            .where(Trial.study_id.in_(study_ids))
            .group_by(Trial.study_id, Trial.arm)
        )

        def finite(value: float | None) -> float | None:
            return value if value is None or math.isfinite(value) else None

        for study_id, arm, n, low, high in rows:
            found[study_id][arm] = {"done": int(n or 0), "min": finite(low), "max": finite(high)}
        return found

    def owner_names(self, owner_ids: list[int]) -> dict[int, str]:
        if not owner_ids:
            return {}
        rows = self.session.execute(
            select(Owner.id, Owner.name).where(Owner.id.in_(set(owner_ids)))
        )
        return {owner_id: name for owner_id, name in rows}

    def active_studies(self, owner_id: int) -> int:
        """The owner's studies that are queued or running."""
        active = (StudyStatus.QUEUED, StudyStatus.RUNNING)
        return self.session.scalar(
            select(func.count(Study.id)).where(Study.owner_id == owner_id, Study.status.in_(active))
        )

    def trials_page(self, study_id: int, *, offset: int, limit: int) -> tuple[list[Trial], int]:
        count = self.session.scalar(select(func.count(Trial.id)).where(Trial.study_id == study_id))
        rows = self.session.scalars(
            select(Trial)
            .where(Trial.study_id == study_id)
            .order_by(Trial.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows), count

    def api_keys(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))

    def revoke_api_keys(self, prefix: str) -> int:
        """Revokes the unrevoked keys whose stored prefix starts with ``prefix``."""
        keys = [
            key
            for key in self.api_keys()
            if key.revoked_at is None and key.prefix.startswith(prefix)
        ]
        for key in keys:
            key.revoked_at = utcnow()
        self.session.flush()
        return len(keys)

    # -- the node inventory ------------------------------------------------------------------

    def record_nodes(self, worker_id: str, nodes: list[dict[str, Any]]) -> None:
        """Upserts what a worker sees of the cluster, one row per Ray node."""
        for seen in nodes:
            node = self.session.scalar(select(Node).where(Node.node_id == seen["node_id"]))
            if node is None:
                node = Node(node_id=seen["node_id"])
                self.session.add(node)
            node.worker_id, node.updated_at = worker_id, utcnow()
            for key in ("address", "cpus", "gpus", "tasks", "optimizers"):
                setattr(node, key, seen[key])
        self.session.flush()

    def nodes(self, *, seen_within: timedelta) -> list[Node]:
        """The nodes some worker reported recently (older rows are gone nodes)."""
        since = utcnow() - seen_within
        return list(
            self.session.scalars(select(Node).where(Node.updated_at >= since).order_by(Node.id))
        )
