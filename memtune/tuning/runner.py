"""The runner: a study spec becomes one Ray Tune run, and its results a verdict.

Search: each arm runs K independent searches (``spec.searches``), each an Optuna TPE (Ray
Tune's ``OptunaSearch``) over the arm's space with its own seed and the same budget; ASHA, when
asked, only compares trials of the same search. Seed re-runs: once a search is over, its best
config is re-run on its re-run seeds (``Search.rerun_seeds``: the same for the r-th search of
every arm). Only the re-runs feed the verdict. All of it is one Tuner (``tuning/search.py`` says
why), so a process runs one study at a time: two ``Tuner.fit()`` at once in one process break.

Where the Tune experiment lives: ``experiment_path`` (the worker gives each study its own
prefix under ``MEMTUNE_STORAGE``, a path every node mounts or a URI such as ``s3://...``), or
a temporary directory removed at the end. A study whose driver died is resumed from there with
``Tuner.restore``: finished trials are not run again, unfinished and errored ones continue
from their last checkpoints, and the searcher (each arm's Optuna search) goes on from its saved
state.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from memtune.studies.records import (
    Phase,
    TrialPlan,
    TrialRecord,
    TrialState,
    best_value,
)
from memtune.studies.spec import ArmSpec, SpecError, StudySpec
from memtune.studies.verdict import Verdict, build_verdict

# Tune's pickles of a study in flight name the callbacks here: imported under the same names.
from memtune.tuning.callbacks import (
    LIVE,
    _CancelStopper,
    _Recorder,
    store_before_snapshots,
    time_limit_noticed,
)
from memtune.tuning.cluster import ray_cluster
from memtune.tuning.code_task import code_errors_not_retried, code_root, runtime_env
from memtune.tuning.extension import done_searches, reusable
from memtune.tuning.launch import pending_trials, trial_workers_without_runtime_env
from memtune.tuning.preemption import node_losses_apart
from memtune.tuning.search import ASHA_OPTIONS, PerArmScheduler, StudySearcher, asha_milestones
from memtune.tuning.sinks import ResultsSink
from memtune.tuning.tracking import Trackers, trackers_for
from memtune.tuning.trainable import (
    train_trial,
)

__all__ = ["StorageError", "StudyCancelled", "StudyRunner", "run_study"]

log = logging.getLogger(__name__)
# With Tune's file loggers off (configure_ray_environment) its result analysis finds no result.json
# and warns once per trial; memtune reads results from its own records.
logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


class StudyCancelled(RuntimeError):
    """The sink asked to stop; the trials were stopped."""


class StorageError(RuntimeError):
    """The study's storage cannot serve this cluster (a local path on several nodes)."""


EXPERIMENT = "study"  # the Tune experiment's name under the study's storage prefix


@dataclass(frozen=True)
class _ArmSpace:
    """An arm's define-by-run search space. A class, not a closure: Tune pickles the searcher."""

    searched: list[Any]  # FloatParam | IntParam | CategoricalParam: only samples, no work
    plan: TrialPlan

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for param in self.searched:
            param.sample(trial)
        return {"run": self.plan}


def _no_progress(runner: StudyRunner) -> None:
    pass


class StudyRunner:
    """Runs one study on the Ray cluster in reach (``RAY_ADDRESS``, or a local one)."""

    def __init__(
        self,
        spec: StudySpec,
        sink: ResultsSink | None = None,
        *,
        progress: Callable[[StudyRunner], None] = _no_progress,
        optuna_storage: str | optuna.storages.BaseStorage | None = None,
        study_key: str | None = None,
        max_failures: int = 1,  # a failed trial is retried once from its checkpoint
        trainable: Callable[[dict[str, Any]], None] = train_trial,
        previous: Iterable[TrialRecord] = (),
        experiment_path: str | None = None,
        shared_storage: bool = False,
        resume: bool = False,
        tracking_key: str | None = None,
        max_node_losses: int | None = None,  # default: MEMTUNE_MAX_NODE_LOSSES, or 100
    ) -> None:
        self.spec = spec
        self.sink = sink or ResultsSink()
        self.progress = progress
        self.optuna_storage = optuna_storage
        self.study_key = study_key or f"{spec.name}-{int(time.time())}"
        # MLflow and TensorBoard beside the study's own sink (spec.tracking, MLFLOW_TRACKING_URI);
        # tracking_key finds a resumed study's MLflow run again (default: this run's own key).
        trackers = trackers_for(spec, tracking_key or self.study_key)
        if trackers:
            self.sink = Trackers(self.sink, trackers)
        self.max_failures = max_failures
        self.trainable = trainable
        # Where the Tune experiment lives (None: a temporary directory), whether every node of
        # the cluster reaches it, and whether to resume the experiment found there.
        self.experiment_path = experiment_path
        self.shared_storage = shared_storage
        self.resume = resume
        self.experiment_key = experiment_path or f"memtune-{id(self)}"
        # Resumed: every trial of the interrupted run (Tune resumes the unfinished ones).
        # Extended: what already ran is kept (see reusable) and not run again.
        previous = list(previous)
        kept = previous if resume else self.reusable(spec, previous)
        self.records: dict[str, TrialRecord] = {r.trial_id: r for r in kept}
        self.cancelled, self.last_cancel_poll = False, 0.0
        self.time_limit_reached = False  # Tune's time budget ended fit() (time_limit_noticed)
        self.bad_input: SpecError | None = None  # a task from code that cannot run
        # Trials whose Ray node died (spot reclaim, a removed node): they resume from their
        # checkpoints without spending their failure budget, up to max_node_losses a study.
        if max_node_losses is None:
            max_node_losses = int(os.environ.get("MEMTUNE_MAX_NODE_LOSSES", "100"))
        self.max_node_losses = max_node_losses
        self.node_losses = 0
        self.lost_nodes: dict[str, bool] = {}  # trial id -> its last failure was a node loss

    # -- what the progress bar reads ----------------------------------------------------------

    @property
    def trials_done(self) -> int:
        return sum(r.state.ended for r in self.records.values())

    def best_by_arm(self) -> dict[str, float]:
        """Per arm, the best value of the study's metric so far, any trial and epoch."""
        metric, mode = self.spec.resolved_metric, self.spec.resolved_mode
        best: dict[str, float] = {}
        for record in self.records.values():
            value = best_value([record.best(metric, mode), best.get(record.arm)], mode)
            if value is not None:
                best[record.arm] = value
        return best

    # What an extension keeps (memtune.tuning.extension); the service and tests call it here.
    reusable = staticmethod(reusable)

    # -- the study -----------------------------------------------------------------------------

    @staticmethod
    def can_resume(experiment_path: str) -> bool:
        """Whether a Tune experiment that can be restored lives at ``experiment_path``."""
        return tune.Tuner.can_restore(f"{experiment_path.rstrip('/')}/{EXPERIMENT}")

    @staticmethod
    def experiment_trials(experiment_path: str) -> set[str]:
        """The ids of the trials Tune's last snapshot of the experiment holds: what a resume
        continues. A trial issued after that snapshot is unknown to it and is issued anew by
        the restored searcher (the snapshot is taken every few seconds: configure_ray_environment)."""
        from ray.tune import ExperimentAnalysis

        analysis = ExperimentAnalysis(f"{experiment_path.rstrip('/')}/{EXPERIMENT}")
        return {trial.trial_id for trial in analysis.trials}

    def run(self) -> Verdict:
        storage = self.experiment_path or tempfile.mkdtemp(prefix="memtune-study-")
        LIVE[self.experiment_key] = self
        try:
            root = code_root(self.spec)
            with ray_cluster(runtime_env=runtime_env(root)):
                # The outcome reaches the sink before a local Ray shuts down (seconds).
                try:
                    self._check_optimizers()
                    self._check_cluster()
                    self.sink.study_started(self.spec)
                    resumed = self.resume and self.can_resume(storage)
                    tuner = self._restored(storage) if resumed else self._tuner(storage)
                    with (
                        pending_trials(self._slots()),
                        trial_workers_without_runtime_env(),
                        node_losses_apart(self),
                        code_errors_not_retried(),
                        store_before_snapshots(self),
                        time_limit_noticed(self),
                    ):
                        tuner.fit()
                    if self.time_limit_reached:
                        self._stop_unended()
                    if self.bad_input is not None:
                        raise self.bad_input
                    if self.cancelled:
                        raise StudyCancelled("the study was cancelled")
                    if self._interrupted():
                        # Ctrl-C: Tune's handler ends fit() as if the study were done. It is
                        # not: never record a verdict of the trials it happened to have.
                        raise KeyboardInterrupt("the study was interrupted before it ended")
                    verdict = build_verdict(self.spec, self.records.values())
                except StudyCancelled:
                    self.sink.study_cancelled()
                    raise
                except KeyboardInterrupt:
                    # The study's own sink keeps it as it is (a resume continues it); the
                    # trackers close their runs.
                    if isinstance(self.sink, Trackers):
                        self.sink.interrupted()
                    raise
                except Exception as error:
                    self.sink.study_failed(f"{type(error).__name__}: {error}")
                    raise
                self.sink.study_finished(verdict)
                return verdict
        finally:
            del LIVE[self.experiment_key]
            if self.experiment_path is None:
                shutil.rmtree(storage, ignore_errors=True)

    def _stop_unended(self) -> None:
        """The time limit ended fit(): Tune stops the trials still running without telling
        the callbacks. Each is STOPPED (it did not run every epoch), so the verdict counts it
        as cut short: a seed run so ended leaves its search without a score, and only the
        searches both arms finished are compared."""
        for record in self.records.values():
            if not record.state.ended:
                record.state = TrialState.STOPPED
                self.sink.trial_finished(record)

    def _interrupted(self) -> bool:
        """After fit(): a trial still running, or (this process's searcher, no time limit)
        searches or seed runs never issued, is what an interrupted fit() leaves behind."""
        if any(not record.state.ended for record in self.records.values()):
            return True
        searcher = getattr(self, "_searcher", None)  # None: a resumed experiment's own
        if searcher is None or self.spec.budget.time_limit_s:
            return False
        return len(searcher.best) < len(searcher.searchers) or bool(searcher.seed_queue)

    def _check_optimizers(self) -> None:
        """The second step of a spec's validation: each arm's optimizer is built with its
        pinned values on a dummy parameter, so the class's own checks (torch) run before any
        trial does. The spec checked names and ranges without torch."""
        import torch

        for index, arm in enumerate(self.spec.arms):
            try:
                arm.optimizer_spec.build(
                    [torch.nn.Parameter(torch.zeros(1))], **arm.optimizer_fixed
                )
            except (TypeError, ValueError) as error:
                raise SpecError(f"arms.{index}.fixed", str(error)) from None

    def _slots(self) -> int:
        """How many of this study's trials the cluster can run at once."""
        resources, wanted = ray.cluster_resources(), self.spec.resources
        slots = int(resources.get("CPU", 1) // wanted.cpu) if wanted.cpu > 0 else 1
        if wanted.gpu > 0:
            slots = min(slots, int(resources.get("GPU", 0) // wanted.gpu))
        return max(1, min(slots, self.spec.max_concurrent_trials or slots))

    def _check_cluster(self) -> None:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if len(nodes) > 1 and not self.shared_storage:
            raise StorageError(
                f"the Ray cluster has {len(nodes)} nodes and this study's trials checkpoint to "
                f"a local path ({self.experiment_path or 'a temporary directory'}): set "
                "MEMTUNE_STORAGE to a path every node mounts (NFS) or a URI (s3://bucket/prefix)"
            )
        resources = ray.cluster_resources()
        wanted = self.spec.resources
        if wanted.gpu > 0 and resources.get("GPU", 0) < wanted.gpu:
            has = resources.get("GPU", 0)
            raise SpecError(
                "resources.gpu", f"{wanted.gpu} GPU per trial requested, the cluster has {has:g}"
            )
        if wanted.cpu > resources.get("CPU", 0):
            has = resources.get("CPU", 0)
            raise SpecError(
                "resources.cpu", f"{wanted.cpu} CPUs per trial requested, the cluster has {has:g}"
            )

    def _plan(self, arm: ArmSpec, phase: Phase, seed: int, repeat: int) -> TrialPlan:
        spec = self.spec
        return TrialPlan(
            task=spec.task,
            task_options=spec.task_options,
            smoke=spec.smoke,
            optimizer=arm.optimizer,
            fixed=arm.fixed,
            epochs=spec.arm_epochs(arm),
            seed=seed,
            arm=arm.label,
            phase=phase,
            metric=spec.resolved_metric,
            mode=spec.resolved_mode,
            threads=max(1, int(spec.resources.cpu)),
            gpu=spec.resources.gpu,
            repeat=repeat,
            schedule=spec.trial_schedule(arm),
            report_epochs=asha_milestones(spec.budget.epochs)
            if spec.scheduler == "asha" and phase == Phase.SEARCH
            else (),
            code_package=spec.task_code.package if spec.task_code else None,
        )

    def _searches(self) -> dict[str, tuple[OptunaSearch, list[TrialPlan], int]]:
        """Per search of each arm (not those set aside): its Optuna searcher, seeded with the
        search's own seed, the plans of its seed re-runs and the epochs its trials run."""
        spec = self.spec
        searches = {}
        # Search-index-major (every arm's first search, then every arm's second...): the
        # searcher issues trials in this order, so a stretch of failures (a lost node, a full
        # disk) falls on every arm alike instead of on one arm's searches.
        by_index = sorted(
            (
                (search.index, position, arm, search)
                for position, arm in enumerate(spec.arms)
                for search in spec.searches(arm)
                if not search.set_aside
            ),
            key=lambda item: item[:2],
        )
        for _, _, arm, search in by_index:
            plan = self._plan(arm, Phase.SEARCH, search.seed, search.index)
            sampler = optuna.samplers.TPESampler(
                seed=search.sampler_seed, n_startup_trials=self._startup_trials()
            )
            searcher = OptunaSearch(
                space=_ArmSpace(spec.searched(arm), plan),
                metric=spec.resolved_metric,
                mode=spec.resolved_mode,
                sampler=sampler,
                storage=self.optuna_storage,
                study_name=f"{self.study_key}:{plan.search_key}" if self.optuna_storage else None,
            )
            ran = {
                r.seed
                for r in self.records.values()
                if r.phase == Phase.SEED and r.arm == arm.label and r.repeat == search.index
            }
            seeds = [
                self._plan(arm, Phase.SEED, s, search.index)
                for s in search.rerun_seeds
                if s not in ran
            ]
            searches[plan.search_key] = (searcher, seeds, plan.epochs)
        return searches

    def _startup_trials(self) -> int:
        """The random trials TPE starts each search with, before it models the results."""
        return min(10, max(2, self.spec.budget.trials_per_search // 2))

    def _trainable(self) -> Any:
        resources = {"cpu": self.spec.resources.cpu, "gpu": self.spec.resources.gpu}
        return tune.with_resources(self.trainable, resources)

    def _restored(self, storage: str) -> tune.Tuner:
        """The interrupted experiment at ``storage``, to be continued: its searcher, scheduler
        and callbacks come back from Tune's own state (see _DriverOnly)."""
        log.info("resuming the Tune experiment at %s", storage)
        return tune.Tuner.restore(
            f"{storage.rstrip('/')}/{EXPERIMENT}",
            trainable=self._trainable(),
            resume_unfinished=True,
            resume_errored=True,
        )

    def _tuner(self, storage: str) -> tune.Tuner:
        spec = self.spec
        searches = self._searches()
        searcher = self._searcher = StudySearcher(
            {key: search for key, (search, _, _) in searches.items()},
            budget=spec.budget.trials_per_search,
            # With several searches per arm, a search's configs must not depend on timing (the
            # searches are the verdict's exchangeable draws), and the other searches keep the
            # slots busy; one search per arm keeps every slot of its trials.
            startup=self._startup_trials() if spec.searches_per_arm > 1 else None,
            seed_runs={key: seeds for key, (_, seeds, _) in searches.items()},
            epochs={key: epochs for key, (_, _, epochs) in searches.items()},
            metric=spec.resolved_metric,
            mode=spec.resolved_mode,
            done={
                k: v for k, v in done_searches(spec, self.records.values()).items() if k in searches
            },
            pinned={
                self._plan(arm, Phase.SEARCH, search.seed, search.index).search_key
                for arm in spec.arms
                if not spec.searched(arm)
                for search in spec.searches(arm)
            },
        )
        asha = functools.partial(
            ASHAScheduler, time_attr="epoch", max_t=spec.budget.epochs, **ASHA_OPTIONS
        )
        return tune.Tuner(
            self._trainable(),
            tune_config=tune.TuneConfig(
                metric=spec.resolved_metric,
                mode=spec.resolved_mode,
                search_alg=searcher,
                scheduler=PerArmScheduler(asha if spec.scheduler == "asha" else None),
                num_samples=-1,  # the searcher says when it is done
                reuse_actors=True,
                max_concurrent_trials=spec.max_concurrent_trials,
                time_budget_s=spec.budget.time_limit_s,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=storage,
                callbacks=[_Recorder(self)],
                stop=_CancelStopper(self),
                verbose=0,
                # Keeping K checkpoints forces an experiment snapshot every K checkpoints of a
                # trial, so that the snapshot a resume starts from never names a checkpoint
                # already deleted. K = 1 keeps one checkpoint a trial on disk; trials
                # checkpoint by time (memtune.tuning.trainable.CHECKPOINT_EVERY_S), so the
                # forced snapshots come at most that often a trial, whatever its epochs.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
            ),
        )


def run_study(spec: StudySpec, sink: ResultsSink | None = None, **kwargs: Any) -> Verdict:
    """Runs ``spec`` to its verdict; see :class:`StudyRunner` for the options."""
    return StudyRunner(spec, sink, **kwargs).run()
