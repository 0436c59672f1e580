"""The callbacks the runner gives Tune: they turn Tune's trial events into TrialRecords for
the study's sink, and stop the trials when the study is cancelled or its task cannot run.

They live in the driver and find the runner driving their experiment by its path
(:data:`LIVE`): Tune pickles its whole state, and what the runner holds (a sink with a
database engine) must stay out of it. Tune's pickles of a study in flight name these classes
at ``memtune.tuning.runner``, where they are imported too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from ray import tune

from memtune.studies.records import EpochResult, TrialPlan, TrialRecord, TrialState
from memtune.studies.spec import SpecError, StudySpec
from memtune.tuning.code_task import missing_code_metrics
from memtune.tuning.sinks import ResultsSink
from memtune.tuning.trainable import EARLIER_EPOCHS, hyperparameters_of
from memtune.tuning.wrapping import wrapped_while

__all__ = ["LIVE", "DrivenStudy", "store_before_snapshots", "time_limit_noticed"]


class DrivenStudy(Protocol):
    """What the callbacks read and write of the runner driving an experiment
    (:class:`memtune.tuning.runner.StudyRunner`)."""

    spec: StudySpec
    sink: ResultsSink
    records: dict[str, TrialRecord]
    lost_nodes: dict[str, bool]  # trial id -> its last failure was a lost node
    bad_input: SpecError | None
    cancelled: bool
    last_cancel_poll: float
    time_limit_reached: bool
    progress: Callable[[Any], None]


# The runners driving a Tune experiment in this process, by experiment path.
LIVE: dict[str, DrivenStudy] = {}


class _DriverOnly:
    """Callbacks that live in the driver. Tune pickles its whole state (``tuner.pkl``, which
    ``Tuner.restore`` reads back); what these hold (a sink with a database engine) stays out
    of it: they keep the experiment's path and find the runner driving it by that, so that the
    callbacks a restore unpickles talk to the runner that resumed the study."""

    def __init__(self, runner: DrivenStudy) -> None:
        self.key = runner.experiment_key

    @property
    def runner(self) -> DrivenStudy:
        return LIVE[self.key]

    def __getstate__(self) -> dict:
        return {"key": self.key}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _CancelStopper(_DriverOnly, tune.Stopper):
    POLL_S = 1.0

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        runner = self.runner
        if runner.bad_input is not None:  # a task from code that cannot run: stop at once
            return True
        if not runner.cancelled and time.monotonic() - runner.last_cancel_poll >= self.POLL_S:
            runner.last_cancel_poll = time.monotonic()
            runner.cancelled = runner.sink.cancel_requested()
        return runner.cancelled


class _Recorder(_DriverOnly, tune.Callback):
    """Turns Tune's trial events into TrialRecords and hands them to the sink (driver side)."""

    def _record(self, trial: Any) -> TrialRecord:
        return self.runner.records[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        known = self.runner.records.get(trial.trial_id)
        if known is not None:  # restarted after a failure, or resumed: the same record
            if known.state.ended:  # it ended after the snapshot a resume started from
                known.state = TrialState.RUNNING  # runs again, to the same values
            return
        plan: TrialPlan = trial.config["run"]
        record = TrialRecord(
            trial_id=trial.trial_id,
            arm=plan.arm,
            phase=plan.phase,
            seed=plan.seed,
            config=hyperparameters_of(trial.config),
            repeat=plan.repeat,
        )
        self.runner.records[trial.trial_id] = record
        self.runner.sink.trial_started(record)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        record = self._record(trial)
        evaluated = self.runner.spec.task_spec.evaluated
        # One report may carry several epochs (memtune.tuning.trainable: EARLIER_EPOCHS).
        epochs = [
            EpochResult.from_dict(data, evaluated)
            for data in [*result.get(EARLIER_EPOCHS, ()), result]
        ]
        runner = self.runner
        if runner.spec.from_code and runner.bad_input is None:
            runner.bad_input = missing_code_metrics(
                runner.spec, record, trial.config["run"], epochs
            )
        # A trial resumed from a checkpoint reports its epochs again from there: keep one each.
        record.epochs = [e for e in record.epochs if e.epoch < epochs[0].epoch] + epochs
        for epoch in epochs:
            if epoch.diverged:
                record.state = TrialState.DIVERGED
            self.runner.sink.epoch_reported(record, epoch)
        self.runner.progress(self.runner)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self.runner.sink.trial_checkpointed(self._record(trial))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.runner.sink.between_steps()

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        record.attempt += 1  # it restarts from its last checkpoint
        if self.runner.lost_nodes.pop(trial.trial_id, False):
            record.node_losses += 1  # not the trial's failure (see memtune.tuning.preemption)
        record.state = TrialState.RUNNING

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        if record.state != TrialState.DIVERGED:
            ran_all = len(record.epochs) >= trial.config["run"].epochs
            record.state = TrialState.COMPLETED if ran_all else TrialState.STOPPED
        self._finish(record)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        record.state = TrialState.ERROR
        record.traceback = _error_text(trial)
        lines = [line for line in record.traceback.splitlines() if line.strip()]
        record.error = lines[-1] if lines else "the trial failed"
        # memtune.studies.code.CodeError, as Tune wrote it: a task from code that cannot run
        # (its builder raised or returned no TaskRun, evaluate lacks a declared metric) would
        # fail every trial, so the study stops with the field named.
        named = re.search(r"CodeError: (\w+): (.*)$", record.error)
        if named and self.runner.bad_input is None:
            self.runner.bad_input = SpecError(
                named[1], f"{named[2]} (trial {record.trial_id} holds the traceback)"
            )
        self._finish(record)

    def _finish(self, record: TrialRecord) -> None:
        self.runner.sink.trial_finished(record)
        self.runner.progress(self.runner)


def _error_text(trial: Any) -> str:
    """The trial's error as Tune wrote it (the traceback)."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    return text.strip() or "the trial failed"


def store_before_snapshots(runner: DrivenStudy) -> AbstractContextManager[None]:
    """While it holds, the study's sink writes what it buffers before Tune writes any file of
    an experiment snapshot (the snapshot a resume starts from: trials it holds as ended are
    not run again), so that the store is never behind it.

    Tune saves a snapshot in ``TuneController.save_to_dir``, on every path (periodic, forced by
    a checkpoint, the last one of ``fit()``), and copies the files to the experiment's storage
    in the background, where a copy still running may already read the new state file: a hook
    inside the save (a callback's ``get_state``, called after that file is written) would come
    too late. Ray is pinned (2.60.0), so this method is fixed; one ``fit()`` runs per process.
    """
    from ray.tune.execution.tune_controller import TuneController

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def save_to_dir(controller: Any) -> None:
            runner.sink.before_snapshot()
            original(controller)

        return save_to_dir

    return wrapped_while(TuneController, "save_to_dir", wrap)


def time_limit_noticed(runner: DrivenStudy) -> AbstractContextManager[None]:
    """While it holds, the study learns when Tune's time budget (``budget.time_limit_s``)
    ends the experiment: Tune then stops the running trials without a callback, and a fit()
    that returns with trials still running would read as a Ctrl-C.

    The budget is Tune's ``TimeoutStopper``, kept in the experiment's state, so a resumed
    study gets what was left of it; this wraps its ``stop_all`` (Ray is pinned, 2.60.0) to
    set ``runner.time_limit_reached`` when it ends the experiment. A cancel is checked first
    (Tune's combined stopper stops at the first that says stop), and a Ctrl-C never passes
    through a stopper, so neither reads as the limit."""
    from ray.tune.stopper import TimeoutStopper

    def wrap(original: Callable[..., bool]) -> Callable[..., bool]:
        def stop_all(stopper: Any) -> bool:
            ended = original(stopper)
            if ended:
                runner.time_limit_reached = True
            return ended

        return stop_all

    return wrapped_while(TimeoutStopper, "stop_all", wrap)
