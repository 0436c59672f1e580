"""A study whose task comes from code (``task: my_task.py:build`` or ``package.module:build``):
its files shipped to the cluster, its builder imported once before Ray starts, and the
metrics its ``evaluate()`` returns checked against the spec at the first trial."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import ray

from memtune.studies.code import CodeError, code_cache, load_builder
from memtune.studies.records import EpochResult, Phase, TrialPlan, TrialRecord
from memtune.studies.spec import SpecError, StudySpec
from memtune.tuning.wrapping import wrapped_while

__all__ = ["code_errors_not_retried", "code_root", "missing_code_metrics", "runtime_env"]


def code_root(spec: StudySpec) -> Path | None:
    """The task's files extracted on this machine and its builder imported here once, so that
    a missing function or a file that does not import stops the study before Ray starts.
    Returns where the files are (None: nothing to ship)."""
    if not spec.from_code:
        return None
    root = None
    if spec.task_code is not None:
        root = spec.task_code.extract(code_cache())
    elif spec.task.split(":")[0].endswith(".py"):
        raise SpecError(
            "task",
            f"{spec.task}: the file was never read; load the spec with load_spec() or "
            "run it with memtune.run(), which read the task's files",
        )
    try:  # an installed module (module:function without files) is imported by name
        load_builder(spec.task, root)
    except CodeError as error:
        raise SpecError(error.field, error.message) from None
    return root


def runtime_env(root: Path | None) -> dict[str, Any] | None:
    """What a driver that connects to a cluster (RAY_ADDRESS) ships to every node: the task's
    files, only for a study that has some (a runtime env costs each actor a set-up process).
    Ray started before this study cannot take them any more: unless they came with this
    process's own runtime env (the service's study drivers), that is an error rather than
    trials that fail on every other node."""
    if root is None or not os.environ.get("RAY_ADDRESS"):
        return None
    if ray.is_initialized() and importlib.util.find_spec(root.name) is None:
        raise SpecError(
            "task",
            "Ray was connected before this study, so its runtime environment cannot carry "
            f"the task's files any more: run the study first, or ray.init(runtime_env="
            f"{{'py_modules': ['{root}']}})",
        )
    return {"py_modules": [str(root)]}


def missing_code_metrics(
    spec: StudySpec, record: TrialRecord, plan: TrialPlan, epochs: list[EpochResult]
) -> SpecError | None:
    """A task from code declares its metrics in the spec; the first epoch that evaluates (and
    the first test evaluation) checks them, so that a typo stops the study at its first trial
    instead of after it. Returns the error naming the field, or None."""
    for epoch in epochs:
        if epoch.diverged:
            continue
        returned = set(epoch.metrics)
        missing = [m for m in spec.metrics or {} if m not in returned]
        tested = plan.phase == Phase.SEED and epoch.epoch == plan.epochs
        twin = spec.headline_metric
        if tested and twin != spec.resolved_metric and twin not in returned:
            missing.append(twin)
        if missing:
            return SpecError(
                "metrics",
                f"{spec.task}'s evaluate() returned {', '.join(sorted(returned)) or 'nothing'} "
                f"in trial {record.trial_id}, not {', '.join(missing)}: metrics declares "
                "every validation metric, and a val_* metric needs its test_* twin on the "
                "test split",
            )
    return None


def code_errors_not_retried() -> AbstractContextManager[None]:
    """While it holds, a trial that fails with a CodeError (a task from code that cannot run:
    its builder raised or returned no TaskRun) spends its failure budget at once. It fails
    before its first epoch, so a retry has no checkpoint to start from and would build the same
    task again, and the study stops on the trial's error anyway (the callbacks' bad_input):
    the retry only delayed the stop by a trial's start.

    Tune decides whether to retry right after ``Trial.handle_error``, with no hook in between;
    this wraps that method (Ray is pinned, 2.60.0), as memtune.tuning.preemption does."""
    from ray.exceptions import RayTaskError
    from ray.tune.experiment import Trial

    def wrap(original: Callable[..., None]) -> Callable[..., None]:
        def handle_error(trial: Any, exc: Any = None) -> None:
            original(trial, exc)
            cause = exc.as_instanceof_cause() if isinstance(exc, RayTaskError) else exc
            if isinstance(cause, CodeError) and trial.max_failures >= 0:
                metadata = trial.run_metadata
                metadata.num_failures = max(metadata.num_failures, trial.max_failures + 1)

        return handle_error

    return wrapped_while(Trial, "handle_error", wrap)
