"""Trackers: a study's trials and verdict in MLflow and TensorBoard, beside memtune's own store.

Both are results sinks the runner adds beside the study's own (``trackers_for``), when the
spec's ``tracking`` names them or, for MLflow, ``MLFLOW_TRACKING_URI`` is set. Neither may
fail or stall a study: a tracker's calls run on a thread of their own, an error there is a
warning (once per tracker), and at the end the study waits for them at most
``FLUSH_TIMEOUT_S``; memtune's store keeps everything either way. Each library is imported
only when its tracker is made (the optional extras ``memtune[mlflow]`` and
``memtune[tensorboard]``), so the API process never imports them.

MLflow: a study is a parent run and every trial a nested run (params: its config; tags: arm,
optimizer, phase, seed, search, attempt; metrics per epoch at step = epoch, costs included);
the verdict is the parent's ``verdict.json`` artifact and its headline numbers the parent's
metrics. A resumed study (the service's worker died) continues its parent run and the nested
runs of its unfinished trials, found by their ``memtune.*`` tags.

TensorBoard: one event file per trial, its run named ``arm/phase/seed<seed>-<trial>``, the
scalars of every epoch; the verdict as text in the run ``verdict``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from memtune.studies.nonfinite import to_json
from memtune.studies.records import EpochResult, TrialRecord, TrialState
from memtune.studies.spec import StudySpec
from memtune.studies.verdict import Verdict, format_verdict
from memtune.tuning.sinks import ResultsSink

__all__ = ["FLUSH_TIMEOUT_S", "MlflowTracker", "TensorBoardTracker", "Trackers", "trackers_for"]

log = logging.getLogger(__name__)

# How long a study's end waits for a tracker to send what it still holds.
FLUSH_TIMEOUT_S = float(os.environ.get("MEMTUNE_TRACKER_FLUSH_S", "30"))
# MLflow's HTTP client retries for minutes by default; a tracker must answer or give up fast.
_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def _scalars(record: TrialRecord, epoch: EpochResult) -> dict[str, float]:
    """An epoch's finite numbers by name: the training loss, the task's metrics, the costs."""
    values: dict[str, Any] = {"train_loss": epoch.train_loss, **epoch.metrics, **epoch.costs()}
    return {
        name: float(value)
        for name, value in values.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }


class _Background(ResultsSink):
    """A tracker whose calls run in order on a thread of its own: the study hands it an
    event and goes on; what fails is logged once and the rest is still tried."""

    name = "tracker"

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[..., None], tuple] | None] = queue.Queue(10_000)
        self._thread = threading.Thread(
            target=self._drain, name=f"memtune-{self.name}", daemon=True
        )
        self._thread.start()
        self._warned = False
        self._abandoned = False  # closed without sending everything: drop the rest
        self.dropped = 0

    def _post(self, call: Callable[..., None], *args: Any) -> None:
        try:
            self._calls.put_nowait((call, args))
        except queue.Full:  # a tracker that cannot keep up loses events, never the study
            self.dropped += 1

    def _drain(self) -> None:
        while (item := self._calls.get()) is not None:
            call, args = item
            if self._abandoned:
                continue
            try:
                call(*args)
            except Exception as error:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "%s: %s: %s (the study goes on; memtune's own results keep everything)",
                        self.name,
                        type(error).__name__,
                        error,
                    )

    def close(self, timeout_s: float | None = None) -> None:
        """Sends what is queued, waiting at most ``timeout_s`` (default FLUSH_TIMEOUT_S)."""
        try:
            self._calls.put_nowait(None)
        except queue.Full:  # stuck on a silent server: drop the rest, end when there is room
            self._abandoned = True
            threading.Thread(target=self._calls.put, args=(None,), daemon=True).start()
        self._thread.join(FLUSH_TIMEOUT_S if timeout_s is None else timeout_s)
        self._abandoned = self._thread.is_alive()
        if self._abandoned or self.dropped:
            log.warning(
                "%s: gave up on %d event(s) it could not send in time",
                self.name,
                self._calls.qsize() + self.dropped,
            )


class MlflowTracker(_Background):
    """A study as an MLflow parent run, each trial a nested run (see the module's doc)."""

    name = "mlflow"

    def __init__(self, uri: str, *, key: str, experiment: str | None = None) -> None:
        for variable, value in _MLFLOW_ENV.items():
            os.environ.setdefault(variable, value)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        self.uri, self.key, self.experiment = uri, key, experiment
        self.parent: str | None = None
        self.experiment_id: str | None = None
        self._study: tuple[str, dict[str, Any]] | None = None  # to start it late
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.optimizers: dict[str, str] = {}
        super().__init__()

    # -- events (the study's thread): copy what they need, hand it over -----------------------

    def study_started(self, spec: StudySpec) -> None:
        self.optimizers = {arm.label: arm.optimizer for arm in spec.arms}
        params = {
            "task": spec.task,
            "metric": spec.resolved_metric,
            "mode": spec.resolved_mode,
            "searches_per_arm": spec.searches_per_arm,
            "trials_per_search": spec.budget.trials_per_search,
            "epochs": spec.budget.epochs,
            "seeds": ",".join(map(str, spec.seeds or ())),
            "arms": ",".join(f"{a.label}={a.optimizer}" for a in spec.arms),
            "baseline": spec.baseline_arm.label if spec.baseline_arm else "",
            "search_seed": spec.search_seed,
        }
        self._study = (spec.name, params)
        self._post(self._start_study, spec.name, params)

    def trial_started(self, record: TrialRecord) -> None:
        tags = {
            "memtune.trial_id": record.trial_id,
            "arm": record.arm,
            "optimizer": self.optimizers.get(record.arm, ""),
            "phase": str(record.phase),
            "seed": str(record.seed),
            "search": str(record.repeat),
            "attempt": str(record.attempt),
        }
        name = f"{record.arm}/{record.phase}/seed{record.seed}"
        self._post(self._start_trial, record.trial_id, name, dict(record.config), tags)

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        self._post(self._log_epoch, record.trial_id, epoch.epoch, _scalars(record, epoch))

    def trial_finished(self, record: TrialRecord) -> None:
        tags = {"state": str(record.state), "attempt": str(record.attempt)}
        if record.error:
            tags["error"] = record.error[:5000]
        status = "FAILED" if record.state == TrialState.ERROR else "FINISHED"
        self._post(self._end_trial, record.trial_id, tags, status)

    def study_finished(self, verdict: Verdict) -> None:
        self._post(self._end_study, "FINISHED", verdict.to_dict(), _headline(verdict))
        self.close()

    def study_failed(self, error: str) -> None:
        self._post(self._end_study, "FAILED", None, {}, error)
        self.close()

    def study_cancelled(self) -> None:
        self._post(self._end_study, "KILLED", None, {})
        self.close()

    # -- calls (the tracker's thread) ----------------------------------------------------------

    def _start_study(self, name: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        experiment_name = self.experiment or name
        found = self.client.get_experiment_by_name(experiment_name)
        experiment = (
            found.experiment_id if found else self.client.create_experiment(experiment_name)
        )
        self.experiment_id = experiment
        earlier = self.client.search_runs(
            [experiment],
            filter_string=f"tags.`memtune.study` = '{_quoted(self.key)}'",
            max_results=1,
        )
        if earlier:  # a resumed study: its parent run goes on
            self.parent = earlier[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
            self.runs = {
                run.data.tags["memtune.trial_id"]: run.info.run_id
                for run in self._children(experiment)
                if "memtune.trial_id" in run.data.tags
            }
            return
        run = self.client.create_run(experiment, run_name=name, tags={"memtune.study": self.key})
        self.parent = run.info.run_id
        self.client.log_batch(self.parent, params=[Param(k, str(v)) for k, v in params.items()])

    def _children(self, experiment: str) -> list[Any]:
        """Every nested run of the parent, page by page (a study has thousands of trials)."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment],
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}'",
                max_results=1000,
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _ensure_parent(self) -> None:
        """A server that was down when the study started: start its parent run now."""
        if self.parent is None and self._study is not None:
            self._start_study(*self._study)

    def _start_trial(self, trial_id: str, name: str, config: dict, tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        self._ensure_parent()
        if trial_id in self.runs:  # resumed, or restarted after a failure: the same run
            run_id = self.runs[trial_id]
            self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            return
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"mlflow.parentRunId": self.parent, **tags}
        )
        self.runs[trial_id] = run.info.run_id
        params = [
            Param(k, json.dumps(to_json(v)) if not isinstance(v, str) else v)
            for k, v in config.items()
        ]
        self.client.log_batch(run.info.run_id, params=params)

    def _log_epoch(self, trial_id: str, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(_metric_name(k), v, stamp, step) for k, v in values.items()]
        self.client.log_batch(self.runs[trial_id], metrics=metrics)

    def _end_trial(self, trial_id: str, tags: dict[str, str], status: str) -> None:
        from mlflow.entities import RunTag

        run_id = self.runs[trial_id]
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status=status)

    def _end_study(
        self, status: str, verdict: dict | None, headline: dict[str, float], error: str = ""
    ) -> None:
        from mlflow.entities import Metric

        self._ensure_parent()
        if verdict is not None:
            self.client.log_dict(self.parent, to_json(verdict), "verdict.json")
        stamp = int(time.time() * 1000)
        if headline:
            metrics = [Metric(_metric_name(k), v, stamp, 0) for k, v in headline.items()]
            self.client.log_batch(self.parent, metrics=metrics)
        if error:
            self.client.set_tag(self.parent, "error", error[:5000])
        self.client.set_terminated(self.parent, status=status)


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def _metric_name(name: str) -> str:
    """MLflow's metric names: letters, digits and ``_-./ `` only."""
    return re.sub(r"[^\w\-./ ]", "_", name)


def _headline(verdict: Verdict) -> dict[str, float]:
    """The verdict's numbers a tracker can plot: each arm's mean and interval, and each
    comparison's shift, its interval and its Holm-adjusted p."""
    numbers: dict[str, Any] = {}
    for arm in verdict.arms:
        for field in ("mean", "ci_low", "ci_high", "mean_step_time_s"):
            numbers[f"{arm.arm}.{field}"] = getattr(arm, field)
    for comparison in verdict.comparisons:
        for field in ("difference", "ci_low", "ci_high", "p_adjusted"):
            numbers[f"{comparison.arm}_vs_{comparison.baseline}.{field}"] = getattr(
                comparison, field
            )
    return {
        name: float(value)
        for name, value in numbers.items()
        if isinstance(value, int | float) and math.isfinite(value)
    }


class TensorBoardTracker(ResultsSink):
    """One event file per trial under ``directory/<study>``; the verdict as text."""

    def __init__(self, directory: str | Path, *, study: str) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self._writer_class = SummaryWriter
        self.root = Path(directory) / _path_part(study)
        self.writers: dict[str, Any] = {}
        self._warned = False

    def _guard(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as error:  # a full disk must not end the study
            if not self._warned:
                self._warned = True
                log.warning("tensorboard: %s: %s (the study goes on)", type(error).__name__, error)

    def _writer(self, record: TrialRecord) -> Any:
        if record.trial_id not in self.writers:
            run = (
                self.root
                / _path_part(record.arm)
                / str(record.phase)
                / f"seed{record.seed}-{record.trial_id}"
            )
            self.writers[record.trial_id] = self._writer_class(log_dir=str(run))
        return self.writers[record.trial_id]

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        def write() -> None:
            writer = self._writer(record)
            for name, value in _scalars(record, epoch).items():
                writer.add_scalar(name, value, global_step=epoch.epoch)

        self._guard(write)

    def trial_finished(self, record: TrialRecord) -> None:
        writer = self.writers.pop(record.trial_id, None)
        if writer is not None:
            self._guard(writer.close)

    def study_finished(self, verdict: Verdict) -> None:
        def write() -> None:
            writer = self._writer_class(log_dir=str(self.root / "verdict"))
            # Markdown: four spaces keep the table's columns.
            text = "\n".join("    " + line for line in format_verdict(verdict).splitlines())
            writer.add_text("verdict", text)
            writer.close()

        self._guard(write)
        self._close_all()

    def study_failed(self, error: str) -> None:
        self._close_all()

    def study_cancelled(self) -> None:
        self._close_all()

    def _close_all(self) -> None:
        for writer in self.writers.values():
            self._guard(writer.close)
        self.writers.clear()


def _path_part(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name) or "_"


class Trackers(ResultsSink):
    """The study's own sink first, then each tracker; the own sink alone answers cancels."""

    def __init__(self, primary: ResultsSink, trackers: list[ResultsSink]) -> None:
        self.primary, self.trackers = primary, trackers

    def _each(self, event: str, *args: Any) -> None:
        for sink in (self.primary, *self.trackers):
            getattr(sink, event)(*args)

    def study_started(self, spec: StudySpec) -> None:
        self._each("study_started", spec)

    def trial_started(self, record: TrialRecord) -> None:
        self._each("trial_started", record)

    def epoch_reported(self, record: TrialRecord, epoch: EpochResult) -> None:
        self._each("epoch_reported", record, epoch)

    def trial_checkpointed(self, record: TrialRecord) -> None:
        self._each("trial_checkpointed", record)

    def trial_finished(self, record: TrialRecord) -> None:
        self._each("trial_finished", record)

    def between_steps(self) -> None:
        self._each("between_steps")

    def before_snapshot(self) -> None:
        self._each("before_snapshot")

    def study_finished(self, verdict: Verdict) -> None:
        self._each("study_finished", verdict)

    def study_failed(self, error: str) -> None:
        self._each("study_failed", error)

    def study_cancelled(self) -> None:
        self._each("study_cancelled")

    def interrupted(self) -> None:
        """Ctrl-C: the trackers close their runs (the study's own sink keeps it resumable)."""
        for tracker in self.trackers:
            tracker.study_cancelled()

    def cancel_requested(self) -> bool:
        return self.primary.cancel_requested()


def _add(made: list[ResultsSink], extra: str, make: Callable[[], ResultsSink]) -> None:
    """A tracker that cannot be made (its library missing, a URI it refuses) is a warning:
    the study runs without it."""
    try:
        made.append(make())
    except ImportError:
        log.warning("%s asked for but not installed: pip install 'memtune[%s]'", extra, extra)
    except Exception as error:
        log.warning("%s: %s: %s (the study goes on without it)", extra, type(error).__name__, error)


def trackers_for(spec: StudySpec, key: str) -> list[ResultsSink]:
    """The trackers a study reports to: the spec's ``tracking``, and MLflow at
    ``MLFLOW_TRACKING_URI`` when the spec names no server."""
    tracking = spec.tracking
    uri = (tracking.mlflow if tracking else None) or os.environ.get("MLFLOW_TRACKING_URI")
    made: list[ResultsSink] = []
    if uri:
        experiment = tracking.experiment if tracking else None
        _add(made, "mlflow", lambda: MlflowTracker(uri, key=key, experiment=experiment))
    if tracking and tracking.tensorboard:
        directory = tracking.tensorboard
        _add(made, "tensorboard", lambda: TensorBoardTracker(directory, study=spec.name))
    return made
