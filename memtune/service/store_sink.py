"""A study's results in the store: :class:`StoreSink` writes the trials and their epochs as the
runner reports them, :func:`stored_records` reads them back as the runner records them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from memtune.service.lease import Lease
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import EpochResult, StudyStatus, TrialRecord
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict
from memtune.tuning.sinks import ResultsSink

log = logging.getLogger(__name__)


class StoreSink(ResultsSink):
    """Writes trials and per-epoch metrics to the store, in batches.

    A trial's start, its epochs and its end are buffered and written together, one
    transaction at most every :attr:`flush_every_s` (the Tune driver waits for each write,
    and a trial waits for the driver between its epochs; bench/scale.py), and always before
    Tune saves the experiment snapshot a resume starts from (``before_snapshot``) and when the
    study ends. So the store is never behind the snapshot: a worker that dies loses at most
    what came after it, which the resume runs and reports again (and re-reported epochs are
    stored once).
    """

    flush_every_s = 1.0

    def __init__(
        self,
        db: Database,
        study_id: int,
        worker_id: str,
        *,
        metric: str,
        mode: str,
        lease: Lease | None = None,
        retry_s: float = 60.0,
    ) -> None:
        self.db, self.study_id, self.worker_id = db, study_id, worker_id
        self.metric, self.mode = metric, mode
        self.lease = lease  # None: the study is driven in a Ray task, away from its lease
        self.retry_s = retry_s
        # Per trial id: its record and the metric rows not written yet.
        self._pending: dict[str, tuple[TrialRecord, list[dict[str, Any]]]] = {}
        self._flushed = time.monotonic()

    def _write(self, operation: Callable[[Repository], Any]) -> Any:
        """Runs ``operation`` in a session, again with backoff while the database is away (a
        restart, a dropped connection): for up to ``retry_s`` nothing reported is lost."""
        delay, deadline = 0.25, time.monotonic() + self.retry_s
        while True:
            try:
                with self.db.session() as session:
                    return operation(Repository(session))
            except (OperationalError, InterfaceError) as error:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("study %s: database unavailable (%s); retrying in %.1f s",
                            self.study_id, type(error).__name__, delay)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _trial_values(self, record: TrialRecord) -> dict[str, Any]:
        ended = record.state.ended
        return {
            "arm": record.arm,
            "phase": record.phase,
            "seed": record.seed,
            "config": record.config,
            "state": record.state,
            "attempt": record.attempt,
            "repeat": record.repeat,
            "node_losses": record.node_losses,
            "epochs_done": len(record.epochs),
            "best_metric": record.best(self.metric, self.mode),
            "final_metric": record.final(self.metric, self.mode) if ended else None,
            "summary": record.epochs[-1].costs() if record.epochs else None,
            "error": record.error,
            "traceback": record.traceback,
        }

    def trial_started(self, record: TrialRecord) -> None:
        self._pending.setdefault(record.trial_id, (record, []))
        self.between_steps()

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        row = {"epoch": epoch.epoch, "attempt": record.attempt, "values": epoch.as_dict()}
        self._pending.setdefault(record.trial_id, (record, []))[1].append(row)
        self.between_steps()

    def trial_finished(self, record: TrialRecord) -> None:
        self.trial_started(record)

    def between_steps(self) -> None:
        if self._pending and time.monotonic() - self._flushed >= self.flush_every_s:
            self.flush()

    def before_snapshot(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Writes the buffered trials' state and epochs in one transaction."""
        pending, self._pending = self._pending, {}
        self._flushed = time.monotonic()
        if not pending:
            return
        batch = [
            (record.trial_id, self._trial_values(record), rows) for record, rows in pending.values()
        ]

        def write(repository: Repository) -> None:
            for trial_id, values, rows in batch:
                trial = repository.upsert_trial(self.study_id, trial_id, **values)
                repository.add_metrics([{"trial_id": trial.id, **row} for row in rows])

        try:
            self._write(write)
        except Exception:  # kept for the next try (the study fails if the database stays away)
            for trial_id, (record, rows) in self._pending.items():
                pending.setdefault(trial_id, (record, []))[1].extend(rows)
            self._pending = pending
            raise

    def study_finished(self, verdict: Verdict) -> None:
        from memtune.service.services import keep_curves

        self.flush()
        if not self._finish(StudyStatus.COMPLETED, verdict=verdict.to_dict()):
            return  # no longer this worker's study
        try:  # the dashboard's curves, kept; without them they are read live, so never fatal
            self._write(lambda repository: keep_curves(repository, self.study_id))
        except Exception:
            log.warning("study %s: its curves were not kept", self.study_id, exc_info=True)

    def study_failed(self, error: str) -> None:
        self._flush_quietly()
        self._finish(StudyStatus.FAILED, error=error)

    def study_cancelled(self) -> None:
        self._flush_quietly()
        self._finish(StudyStatus.CANCELLED, error="cancelled while running")

    def _flush_quietly(self) -> None:
        """Flush on the way out of a study that failed: its ending is recorded regardless."""
        try:
            self.flush()
        except Exception:
            log.warning("study %s: its last epochs were not written", self.study_id, exc_info=True)

    def _finish(
        self, status: StudyStatus, *, verdict: dict | None = None, error: str | None = None
    ) -> bool:
        """Whether the study was still this worker's to finish."""
        return self._write(lambda repository: repository.finish_study(
            self.study_id, self.worker_id, status=status, verdict=verdict, error=error))  # fmt: skip

    def cancel_requested(self) -> bool:
        """A cancel request, or the study no longer ours (its lease went to another worker)."""
        if self.lease is not None:
            return self.lease.cancel_requested or self.lease.lost
        try:
            with self.db.session() as session:
                study = Repository(session).find_study(self.study_id, None)
                return study.cancel_requested or study.worker_id != self.worker_id
        except (OperationalError, InterfaceError):  # away for a moment: ask again later
            return False


def stored_records(repository: Repository, study_id: int, spec: StudySpec) -> list[TrialRecord]:
    """The study's trials as the runner records them, read back from the store."""
    trials = repository.trials_of(study_id)
    history = repository.metrics_of([t.id for t in trials])
    names = spec.task_spec.evaluated
    return [
        TrialRecord(
            trial_id=t.tune_trial_id,
            arm=t.arm,
            phase=t.phase,
            seed=t.seed,
            config=dict(t.config),
            state=t.state,
            epochs=[EpochResult.from_dict(m.values, names) for m in history[t.id]],
            error=t.error,
            attempt=t.attempt,
            repeat=t.repeat,
            node_losses=t.node_losses,
        )
        for t in trials
    ]
