"""The worker: claims queued studies, runs them with the study engine, streams results to the store.

A claimed study carries a lease that a background thread renews (every third of its length);
a study whose worker vanished is claimed again once its lease ran out and resumed from its Tune
experiment under ``MEMTUNE_STORAGE`` (finished trials are not run again; a study without one
starts over). The same thread notices a cancel request, and the runner stops the trials within
about a second.
Several workers may share one PostgreSQL database: claiming is ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from memtune.service.config import Settings, study_storage
from memtune.service.lease import Lease
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database
from memtune.service.store_sink import StoreSink, stored_records
from memtune.studies.code import TaskCode, code_cache
from memtune.studies.records import StudyStatus, TrialRecord
from memtune.studies.spec import StudySpec

log = logging.getLogger(__name__)


def discard_experiment(storage: str) -> None:
    """Removes a study's Tune experiment (a local path or a URI pyarrow reaches)."""
    if "://" not in storage:
        shutil.rmtree(storage, ignore_errors=True)
        return
    import pyarrow.fs

    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
        filesystem.delete_dir(path)
    except (OSError, pyarrow.lib.ArrowException):  # nothing there, or no longer reachable
        log.warning("could not remove %s", storage, exc_info=True)


class ClaimedStudy(NamedTuple):
    """A study this worker claimed: what :meth:`StudyWorker.start` drives."""

    study_id: int
    spec: dict[str, Any]  # as the service stored it (JSON; parsed where it runs)
    attempt: int  # how many times a worker has claimed it, this claim included
    code: bytes | None  # the files of a task from code (a zip), or None


class StudyWorker:
    """Claims and runs studies one at a time (a process runs one Tuner at a time)."""

    def __init__(self, db: Database, settings: Settings, worker_id: str | None = None) -> None:
        self.db, self.settings = db, settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def claim(self) -> ClaimedStudy | None:
        """The next study to run: queued, or running under a worker whose lease ran out."""
        with self.db.session() as session:
            study = Repository(session).claim_study(self.worker_id, self.settings.lease_s)
            if study is None:
                return None
            return ClaimedStudy(study.id, dict(study.spec), study.attempt, study.code)

    def _previous(self, study_id: int, spec: StudySpec, *, resume: bool) -> list[TrialRecord]:
        """The trials of earlier runs that this run keeps, read back from the store; the
        others are deleted (they run again).

        * resumed (its worker died, its Tune experiment is there): every trial; Tune resumes
          the unfinished ones and runs none of the finished again;
        * extended (it holds a verdict): what :meth:`StudyRunner.reusable` keeps;
        * otherwise nothing: it starts over.
        """
        from memtune.tuning.runner import StudyRunner

        with self.db.session() as session:
            repository = Repository(session)
            extended = repository.find_study(study_id, None).verdict is not None
            if not (resume or extended):
                repository.forget_trials(study_id)
                return []
            records = stored_records(repository, study_id, spec)
            if resume:  # what Tune's snapshot knows continues; later trials are issued anew
                known = StudyRunner.experiment_trials(study_storage(self.settings, study_id)[0])
                kept = [r for r in records if r.trial_id in known]
                repository.forget_trials(study_id, keep=frozenset(known))
                return kept
            kept = StudyRunner.reusable(spec, records)
            repository.forget_trials(study_id, keep=frozenset(r.trial_id for r in kept))
            return kept

    def start(
        self, study_id: int, spec_data: dict[str, Any], attempt: int, code: bytes | None = None
    ) -> _Running:
        """Starts driving a claimed study in a Ray task (its Tune driver runs there, so that
        several studies run at once: two Tuner.fit() in one process break). Its lease is
        renewed here; resumed when its Tune experiment is found after a lost worker. A task
        from code: on a cluster (RAY_ADDRESS) its files go with the task's runtime environment
        to every node that runs its driver or its trials; only such a study pays for one."""
        import ray

        from memtune.studies.spec import parse_spec
        from memtune.tuning.runner import StudyRunner

        log.info("worker %s runs study %s (attempt %s)", self.worker_id, study_id, attempt)
        spec = parse_spec(spec_data)
        files = TaskCode(code, spec.task) if code is not None else None
        lease = Lease(self.db, study_id, self.worker_id, self.settings.lease_s)
        lease.start()
        storage, shared = study_storage(self.settings, study_id)
        resume = attempt > 1 and not self._extended(study_id) and StudyRunner.can_resume(storage)
        if resume:
            log.info("study %s: resuming its Tune experiment at %s", study_id, storage)
        else:
            discard_experiment(storage)  # a fresh run, or an extension: a new experiment
        previous = self._previous(study_id, spec, resume=resume)
        drive = ray.remote(num_cpus=0, max_retries=0)(drive_study)
        if files is not None and os.environ.get("RAY_ADDRESS"):
            root = files.extract(code_cache())
            drive = drive.options(runtime_env={"py_modules": [str(root)]})
        reference = drive.remote(
            StudyDrive(
                database_url=self.db.url,
                study_id=study_id,
                spec=spec_data,
                code=code,
                attempt=attempt,
                worker_id=self.worker_id,
                previous=previous,
                storage=storage,
                shared_storage=shared,
                resume=resume,
                max_concurrent_trials=self._trial_cap(spec),
            )
        )
        return _Running(study_id, reference, lease, storage)

    def _trial_cap(self, spec: StudySpec) -> int | None:
        """Fair sharing: with up to N studies at once, a study runs at most 1/N of the
        cluster's trial slots at a time (its spec may ask for fewer)."""
        import ray

        if self.settings.max_studies == 1:
            return spec.max_concurrent_trials
        cpus = ray.cluster_resources().get("CPU", 1) / max(spec.resources.cpu, 1e-9)
        slots = cpus
        if spec.resources.gpu:
            slots = min(slots, ray.cluster_resources().get("GPU", 0) / spec.resources.gpu)
        share = max(1, int(slots // self.settings.max_studies))
        return min(share, spec.max_concurrent_trials or share)

    def finish(self, running: _Running) -> None:
        """Collects a study's task; a task that died without its sink's last word (the Ray
        worker killed, say) fails the study here."""
        import ray

        try:
            ray.get(running.reference)
        except Exception as error:  # the sink already recorded what the runner raised
            log.warning("study %s: its driver ended with %s", running.study_id, error)
            message = f"its driver died: {type(error).__name__}: {error}"[:2000]

            def fail(repository: Repository) -> None:
                study = repository.find_study(running.study_id, None)
                if study.status == StudyStatus.RUNNING:
                    repository.finish_study(
                        running.study_id, self.worker_id, status=StudyStatus.FAILED, error=message
                    )

            StoreSink(self.db, running.study_id, self.worker_id, metric="", mode="max")._write(fail)
        finally:
            running.lease.stop()
        if not running.lease.lost:  # it ended here; a lost lease leaves it to the next worker
            discard_experiment(running.storage)

    def run_one(
        self, study_id: int, spec_data: dict[str, Any], attempt: int, code: bytes | None = None
    ) -> None:
        """Runs one claimed study to its end."""
        self.finish(self.start(study_id, spec_data, attempt, code))

    def _extended(self, study_id: int) -> bool:
        with self.db.session() as session:
            return Repository(session).find_study(study_id, None).verdict is not None

    def run_forever(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Polls for studies until ``stop``; one Ray (local, or RAY_ADDRESS) serves them all."""
        from memtune.tuning.cluster import ray_cluster

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
        from memtune.tuning.cluster import node_inventory

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
        """Keeps up to ``max_studies`` studies running; ``once``: one study, then return."""
        import ray

        self._inventory_at = -math.inf
        running: dict[Any, _Running] = {}
        try:
            while not stop.is_set():
                if (
                    not running
                    and time.monotonic() - self._inventory_at > self.settings.inventory_s
                ):
                    self.record_inventory()  # at start, then every inventory_s while idle
                if running:
                    ended, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
                    for reference in ended:
                        self.finish(running.pop(reference))
                    if once and not running:
                        return
                if len(running) < (1 if once else self.settings.max_studies):
                    claimed = self.claim()
                    if claimed is not None:
                        started = self.start(*claimed)
                        running[started.reference] = started
                        continue
                    if once and not running:
                        return
                stop.wait(self.settings.poll_s)
        finally:
            for started in running.values():  # stopped: the next worker resumes them
                ray.cancel(started.reference, force=True)
                started.lease.stop()


@dataclass
class _Running:
    study_id: int
    reference: Any  # the Ray ObjectRef of its drive_study task
    lease: Lease
    storage: str


@dataclass
class StudyDrive:
    """What a Ray task needs to drive one study (plain data: it travels to the task)."""

    database_url: str
    study_id: int
    spec: dict[str, Any]
    code: bytes | None  # the files of a task from code (a zip)
    attempt: int
    worker_id: str
    previous: list[TrialRecord]
    storage: str
    shared_storage: bool
    resume: bool
    max_concurrent_trials: int | None


def drive_study(drive: StudyDrive) -> None:
    """Runs one study's Tune driver (in a Ray task): results to the store as they come."""
    from memtune.studies.spec import parse_spec
    from memtune.tuning.cluster import configure_ray_environment
    from memtune.tuning.runner import StudyCancelled, StudyRunner

    configure_ray_environment()
    import optuna

    db = Database(drive.database_url, upgrade=False)
    spec = parse_spec(drive.spec)
    if drive.code is not None:
        spec = spec.with_code(TaskCode(drive.code, spec.task))
    if drive.max_concurrent_trials != spec.max_concurrent_trials:
        spec = spec.model_copy(update={"max_concurrent_trials": drive.max_concurrent_trials})
    sink = StoreSink(
        db, drive.study_id, drive.worker_id, metric=spec.resolved_metric, mode=spec.resolved_mode
    )
    try:
        StudyRunner(
            spec,
            sink,
            # Optuna's RDB storage in the same database: optuna-dashboard reads the searches.
            optuna_storage=optuna.storages.RDBStorage(
                db.url, engine_kwargs={"pool_pre_ping": True}
            ),
            study_key=f"memtune-{drive.study_id}-{drive.attempt}",
            tracking_key=f"memtune-study-{drive.study_id}",  # every attempt: one MLflow run
            previous=drive.previous,
            experiment_path=drive.storage,
            shared_storage=drive.shared_storage,
            resume=drive.resume,
        ).run()
    except StudyCancelled:
        log.info("study %s cancelled", drive.study_id)
    except Exception:  # recorded as failed by the sink
        log.exception("study %s failed", drive.study_id)
