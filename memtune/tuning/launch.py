"""How Tune starts a study's trial actors: settings the runner holds for the length of a
``fit()`` and gives back after it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["pending_trials", "trial_workers_without_runtime_env"]


@contextlib.contextmanager
def pending_trials(slots: int) -> Iterator[None]:
    """Lets Tune start up to ``slots`` trials at once while none has started yet.

    With a searcher of its own (StudySearcher) and no concurrency limit, Tune keeps at most one
    trial pending, so each new trial actor (a process that imports torch and builds its task,
    seconds) waits for the one before to be running: a study's first round of trials started
    one after the other (bench/study_overhead.py). Tune reads the limit from this variable when
    its controller starts, inside ``fit()``; a value the operator set is kept.
    """
    if "TUNE_MAX_PENDING_TRIALS_PG" in os.environ:
        yield
        return
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(slots)
    try:
        yield
    finally:
        del os.environ["TUNE_MAX_PENDING_TRIALS_PG"]


@contextlib.contextmanager
def trial_workers_without_runtime_env() -> Iterator[None]:
    """Starts the trial actors of ``fit()`` without the runtime env Tune gives them by default.

    Tune sets ``PL_DISABLE_FORK=1`` in every trial actor's runtime env, for PyTorch Lightning
    (ray-project/ray#28197), which memtune does not use. Any runtime env makes Ray start the
    actor's worker through ``setup_worker.py``: one more Python process that imports part of
    Ray before it execs the worker, on the critical path of every study's
    start; and it keeps the workers Ray prestarts for the job (no runtime env) from hosting
    trials. The variables Tune propagates from the driver (AWS credentials for ``s3://``
    storage, Ray Train's settings) still travel: a study that needs them pays the extra start.
    """
    from ray.tune.execution import class_cache

    dropped = class_cache.DEFAULT_ENV_VARS.pop("PL_DISABLE_FORK", None)
    try:
        yield
    finally:
        if dropped is not None:
            class_cache.DEFAULT_ENV_VARS["PL_DISABLE_FORK"] = dropped
