"""The worker: claims queued studies, runs them with the study engine, streams results to the store.

A claimed study carries a lease that a background thread renews (every third of its length);
a study whose worker vanished is claimed again once its lease ran out, and starts over. The
same thread notices a cancel request, and the runner stops the trials within about a second.
Several workers may share one PostgreSQL database: claiming is ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

from memtune.service.config import Settings
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.studies.records import EpochResult, StudyStatus, TrialRecord
from memtune.studies.verdict import Verdict
from memtune.workers.sinks import ResultsSink

log = logging.getLogger(__name__)


class Lease(threading.Thread):
    """Renews a study's lease until stopped; records a cancel request or a lost lease."""

    def __init__(self, db: Database, study_id: int, worker_id: str, lease_s: float) -> None:
        super().__init__(name=f"lease-{study_id}", daemon=True)
        self.db, self.study_id, self.worker_id, self.lease_s = db, study_id, worker_id, lease_s
        self.cancel_requested = False
        self.lost = False
        self._halt = threading.Event()  # not _stop: Thread has a method of that name

    def run(self) -> None:
        while not self._halt.wait(min(self.lease_s / 3, 1.0)):
            try:
                with self.db.session() as session:
                    ours, cancel = Repository(session).renew_lease(
                        self.study_id, self.worker_id, self.lease_s
                    )
            except Exception:  # a database hiccup: try again at the next tick
                log.warning("could not renew the lease of study %s", self.study_id, exc_info=True)
                continue
            self.cancel_requested = self.cancel_requested or cancel
            if not ours:
                self.lost = True
                log.warning("study %s: lease lost to another worker; stopping", self.study_id)

    def stop(self) -> None:
        self._halt.set()


class StoreSink(ResultsSink):
    """Writes trials and per-epoch metrics to the store as they happen."""

    def __init__(
        self, db: Database, study_id: int, worker_id: str, *, metric: str, mode: str, lease: Lease
    ) -> None:
        self.db, self.study_id, self.worker_id = db, study_id, worker_id
        self.metric, self.mode = metric, mode
        self.lease = lease

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
            "epochs_done": len(record.epochs),
            "best_metric": record.best(self.metric, self.mode),
            "final_metric": record.final(self.metric, self.mode) if ended else None,
            "summary": record.epochs[-1].costs() if record.epochs else None,
            "error": record.error,
            "traceback": record.traceback,
        }

    def trial_started(self, record: TrialRecord) -> None:
        with self.db.session() as session:
            Repository(session).upsert_trial(
                self.study_id, record.trial_id, **self._trial_values(record)
            )

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        with self.db.session() as session:
            repository = Repository(session)
            trial = repository.upsert_trial(
                self.study_id, record.trial_id, **self._trial_values(record)
            )
            repository.add_metrics(
                [
                    {
                        "trial_id": trial.id,
                        "epoch": epoch.epoch,
                        "attempt": record.attempt,
                        "values": epoch.as_dict(),
                    }
                ]
            )

    def trial_finished(self, record: TrialRecord) -> None:
        self.trial_started(record)

    def study_finished(self, verdict: Verdict) -> None:
        self._finish(StudyStatus.COMPLETED, verdict=verdict.to_dict())

    def study_failed(self, error: str) -> None:
        self._finish(StudyStatus.FAILED, error=error)

    def study_cancelled(self) -> None:
        self._finish(StudyStatus.CANCELLED, error="cancelled while running")

    def _finish(
        self, status: StudyStatus, *, verdict: dict | None = None, error: str | None = None
    ) -> None:
        with self.db.session() as session:
            Repository(session).finish_study(
                self.study_id, self.worker_id, status=status, verdict=verdict, error=error
            )

    def cancel_requested(self) -> bool:
        return self.lease.cancel_requested or self.lease.lost


class StudyWorker:
    """Claims and runs studies one at a time (a process runs one Tuner at a time)."""

    def __init__(self, db: Database, settings: Settings, worker_id: str | None = None) -> None:
        self.db, self.settings = db, settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def claim(self) -> tuple[int, dict[str, Any], int] | None:
        """The next study to run. A study that holds a verdict is being extended: its
        finished searches and seed runs are kept. Otherwise a study claimed again (its worker
        vanished) starts over."""
        with self.db.session() as session:
            repository = Repository(session)
            study = repository.claim_study(self.worker_id, self.settings.lease_s)
            if study is None:
                return None
            if study.verdict is None and study.attempt > 1:
                repository.forget_trials(study.id)
            return study.id, dict(study.spec), study.attempt

    def _previous(self, study_id: int, spec: Any) -> list[TrialRecord]:
        """The trials an extension reuses, read back from the store; the others are deleted
        (they run again)."""
        from memtune.workers.runner import StudyRunner

        with self.db.session() as session:
            repository = Repository(session)
            if repository.find_study(study_id, None).verdict is None:
                return []
            trials = repository.trials_of(study_id)
            history = repository.metrics_of([t.id for t in trials])
            names = spec.task_spec.evaluated
            records = [
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
                )
                for t in trials
            ]
            kept = StudyRunner.reusable(spec, records)
            repository.forget_trials(study_id, keep=frozenset(r.trial_id for r in kept))
            return kept

    def run_one(self, study_id: int, spec_data: dict[str, Any], attempt: int) -> None:
        from memtune.studies.spec import parse_spec
        from memtune.workers.runner import StudyCancelled, StudyRunner

        log.info("worker %s runs study %s (attempt %s)", self.worker_id, study_id, attempt)
        spec = parse_spec(spec_data)
        lease = Lease(self.db, study_id, self.worker_id, self.settings.lease_s)
        lease.start()
        sink = StoreSink(
            self.db,
            study_id,
            self.worker_id,
            metric=spec.resolved_metric,
            mode=spec.resolved_mode,
            lease=lease,
        )
        try:
            StudyRunner(
                spec,
                sink,
                optuna_storage=self._optuna_storage(),
                study_key=f"memtune-{study_id}-{attempt}",
                previous=self._previous(study_id, spec),
            ).run()
        except StudyCancelled:
            log.info("study %s cancelled", study_id)
        except Exception:  # recorded as failed by the sink; the worker goes on
            log.exception("study %s failed", study_id)
        finally:
            lease.stop()

    def _optuna_storage(self) -> Any:
        """Optuna's RDB storage in the same database: optuna-dashboard can read the searches."""
        import optuna

        return optuna.storages.RDBStorage(self.db.url, engine_kwargs={"pool_pre_ping": True})

    def run_forever(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Polls for studies until ``stop``; one Ray (local, or RAY_ADDRESS) serves them all."""
        from memtune.workers.cluster import ray_cluster

        stop = stop or threading.Event()
        log.info(
            "worker %s polling %s",
            self.worker_id,
            self.db.engine.url.render_as_string(hide_password=True),
        )
        with ray_cluster():
            self._loop(stop, once=once)

    def record_inventory(self) -> None:
        """Writes what this worker sees of the cluster (nodes, CPUs, GPUs, installed tasks
        and optimizers) to the store, where the API checks submissions against it."""
        from memtune.workers.cluster import node_inventory

        try:
            nodes = node_inventory()
            with self.db.session() as session:
                Repository(session).record_nodes(self.worker_id, nodes)
        except Exception:  # the inventory informs the API; it must not stop the worker
            log.warning("could not record the node inventory", exc_info=True)
            return
        self._inventory_at = time.monotonic()
        log.info("worker %s sees %d node(s)", self.worker_id, len(nodes))

    def _loop(self, stop: threading.Event, *, once: bool) -> None:
        self._inventory_at = -math.inf
        while not stop.is_set():
            if time.monotonic() - self._inventory_at > self.settings.inventory_s:
                self.record_inventory()  # at start, then every inventory_s while idle
            claimed = self.claim()
            if claimed is None:
                if once:
                    return
                stop.wait(self.settings.poll_s)
                continue
            self.run_one(*claimed)
            if once:
                return
