"""One Tuner per study: a searcher and a scheduler that keep the arms apart.

Every Tuner starts its own actors, and an actor's first trial pays for the torch import and
the task set-up (seconds: bench/study_overhead.py, docs/benchmarks.md). A study therefore
runs as a single Tuner whose actors are reused by every trial, and fairness between arms is
kept by these two wrappers instead of by separate Tuners:

- :class:`StudySearcher` holds one Optuna TPE searcher per arm (and repeat of its search,
  ``OptunaSearch``), issues each exactly its budget of trials, round robin, and once a search
  is over, issues the seed re-runs of its best config (ties: the earliest trial);
- :class:`PerArmScheduler` gives each arm its own ASHA (or none), so a trial is only ever
  stopped by comparison with trials of its own arm; seed re-runs are never stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from sqlalchemy.exc import InterfaceError, OperationalError

from memtune.studies.records import Phase, TrialPlan
from memtune.tuning.trainable import hyperparameters_of

__all__ = ["ASHA_OPTIONS", "PerArmScheduler", "StudySearcher", "asha_milestones"]

# How the runner configures ASHA (one bracket, Ray's default reduction factor).
ASHA_OPTIONS = {"grace_period": 1, "reduction_factor": 4, "brackets": 1}


def asha_milestones(max_t: int) -> tuple[int, ...]:
    """The epochs at which ASHA, configured with :data:`ASHA_OPTIONS`, compares a trial with
    the others of its rung: grace x rf^k, as Ray's ``_Bracket`` computes them (a test holds
    the two together). Trials report these epochs at once, so its decisions are those of
    per-epoch reporting."""
    grace, rf = ASHA_OPTIONS["grace_period"], ASHA_OPTIONS["reduction_factor"]
    rungs = int(math.log(max_t / grace) / math.log(rf) + 1)
    return tuple(grace * rf**k for k in range(rungs))


class StudySearcher(Searcher):
    """Search trials for every arm (its own searcher, its budget), then its seed re-runs.

    Args:
        searchers: one searcher per search key (the arm, and its repeat), whose suggestions
            carry ``config["run"]``, a :class:`TrialPlan`.
        budget: searched trials per search.
        startup: the random trials each search starts with; a search issues a later trial (one
            its sampler models on the trials before) only once all its earlier trials ended,
            so what TPE proposes never depends on which trials happened to finish first: a
            search's configs are a function of its seed, at any concurrency. None: no wait.
        seed_runs: per search, the plans of its seed re-runs; the best hyperparameters become
            their ``hparams``. Plain data: Tune pickles the searcher.
        epochs: per search, the epochs a trial must run to count for the best config.
        done: searches that already ran (a study being extended): per search key, its best
            hyperparameters (None: nothing converged); they are not searched again and only
            their plans in ``seed_runs`` are issued, with that config.
        pinned: the searches of arms that search nothing (every setting fixed): there is no
            config to select, so their seed runs run even when the one search trial diverged
            (a sweep must see a setting diverge on its seeds, not lose them).
    """

    def __init__(
        self,
        searchers: dict[str, Searcher],
        *,
        budget: int,
        startup: int | None = None,
        seed_runs: dict[str, list[TrialPlan]],
        epochs: dict[str, int],
        metric: str,
        mode: str,
        done: dict[str, dict[str, Any] | None] | None = None,
        pinned: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.pinned = set(pinned)
        self.pinned_configs: dict[str, dict[str, Any]] = {}
        self.searchers = searchers
        self.budget, self.epochs, self.startup = budget, epochs, startup
        self.seed_runs = seed_runs
        self.issued = dict.fromkeys(searchers, 0)
        self.completed = dict.fromkeys(searchers, 0)
        # Per search: (value, the order the trial was issued in, its hyperparameters).
        self.finished: dict[str, list[tuple[float, int, dict[str, Any]]]] = {
            arm: [] for arm in searchers
        }
        self.issue_order: dict[str, int] = {}
        self.trial_arm: dict[str, tuple[str, str]] = {}
        self.trial_hyperparameters: dict[str, dict[str, Any]] = {}
        self.seed_queue: list[tuple[str, TrialPlan]] = []
        self.best: dict[str, dict[str, Any] | None] = {}
        self._turn = 0
        for arm, hyperparameters in (done or {}).items():
            self.issued[arm] = self.completed[arm] = budget
            self._queue_seed_runs(arm, hyperparameters)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True  # metric and mode come with the study; each arm's space is its own

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.seed_queue:
            arm, plan = self.seed_queue.pop(0)
            self.trial_arm[trial_id] = (arm, Phase.SEED)
            return {"run": plan}
        arms = list(self.searchers)
        for _ in arms:  # round robin over the arms that still have budget
            arm = arms[self._turn % len(arms)]
            self._turn += 1
            if self.issued[arm] >= self.budget:
                continue
            startup = getattr(self, "startup", None)  # None in a searcher pickled before it
            if startup is not None and startup <= self.issued[arm] > self.completed[arm]:
                continue  # a modelled trial waits for every earlier trial of its search
            config = _with_retries(self.searchers[arm].suggest, trial_id)
            if config is None or config == Searcher.FINISHED:
                continue
            self.issued[arm] += 1
            self.issue_order[trial_id] = len(self.issue_order)
            self.trial_arm[trial_id] = (arm, Phase.SEARCH)
            self.trial_hyperparameters[trial_id] = hyperparameters_of(config)
            if arm in getattr(self, "pinned", ()):
                self.pinned_configs[arm] = self.trial_hyperparameters[trial_id]
            return config
        if len(self.best) == len(self.searchers):
            return Searcher.FINISHED  # every search is over and every seed run was issued
        return None  # waiting for searches to finish before their seed re-runs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        arm, phase = self.trial_arm.get(trial_id, (None, None))
        if phase == Phase.SEARCH:
            _tolerating_replays(self.searchers[arm].on_trial_result, trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        arm, phase = self.trial_arm.pop(trial_id, (None, None))  # counted once
        if phase != Phase.SEARCH:
            return
        _tolerating_replays(
            self.searchers[arm].on_trial_complete, trial_id, result=result, error=error
        )
        self.completed[arm] += 1
        value = (result or {}).get(self.metric)
        ran_every_epoch = (result or {}).get("epoch") == self.epochs[arm]
        if (
            not error
            and ran_every_epoch
            and isinstance(value, int | float)
            and math.isfinite(value)
        ):
            hyperparameters = self.trial_hyperparameters[trial_id]
            self.finished[arm].append((value, self.issue_order[trial_id], hyperparameters))
        if self.completed[arm] == self.budget:
            self._queue_seed_runs(arm, self._best_of(arm))

    def _best_of(self, arm: str) -> dict[str, Any] | None:
        """One best config, chosen once: the best value, of equal values the earliest trial."""
        if not self.finished[arm]:
            # Nothing converged: no config to re-run, unless every setting is pinned (then the
            # one possible config is re-run anyway; None in a searcher pickled before this).
            return getattr(self, "pinned_configs", {}).get(arm)
        sign = 1 if self.mode == "min" else -1
        _, _, best = min(self.finished[arm], key=lambda item: (sign * item[0], item[1]))
        return best

    def _queue_seed_runs(self, arm: str, hyperparameters: dict[str, Any] | None) -> None:
        self.best[arm] = hyperparameters
        if hyperparameters is None:
            return
        self.seed_queue += [
            (arm, replace(plan, hparams=hyperparameters)) for plan in self.seed_runs[arm]
        ]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as stream:
            pickle.dump(self.__dict__, stream)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as stream:
            self.__dict__.update(pickle.load(stream))
        for searcher in self.searchers.values():
            _fail_unknown_trials(searcher)


log = logging.getLogger(__name__)
# Optuna's RDB storage lives in memtune's database; while that is away (a restart, a dropped
# connection) a searcher call is retried with backoff for up to this long.
STORAGE_RETRY_S = 60.0


def _with_retries(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` again with backoff while the database behind Optuna's storage is away."""
    delay, deadline = 0.25, time.monotonic() + STORAGE_RETRY_S
    while True:
        try:
            return call(*args, **kwargs)
        except (StorageInternalError, OperationalError, InterfaceError) as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Optuna's storage unavailable (%s); retrying in %.1f s",
                        type(error).__name__, delay)  # fmt: skip
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _fail_unknown_trials(searcher: Searcher) -> None:
    """Fails the trials of an arm's Optuna study that a restored searcher does not know.

    A resumed experiment comes back from Tune's last snapshot; a trial issued after it was
    asked of Optuna's RDB storage, which keeps it RUNNING forever. TPE's constant liar (Optuna's
    default) counts a running trial as a bad observation, so such an orphan would steer every
    later suggestion of its arm away from its config, and the resumed search would differ from
    the uninterrupted one (seen in tests/service/test_distributed.py). The restored searcher
    issues that trial anew from the snapshot's sampler state; the orphan is failed, which TPE
    ignores.
    """
    study = getattr(searcher, "_ot_study", None)
    if study is None:  # not an OptunaSearch, or one that never asked
        return
    known = {trial._trial_id for trial in getattr(searcher, "_ot_trials", {}).values()}
    running = _with_retries(study.get_trials, deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        if trial._trial_id not in known:
            _with_retries(study._storage.set_trial_state_values, trial._trial_id, TrialState.FAIL)
            log.info("failed Optuna trial %d of %s: issued after the snapshot resumed from",
                     trial.number, study.study_name)  # fmt: skip


def _tolerating_replays(call: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Forwards a trial event to an arm's Optuna searcher. A resumed experiment (Tuner.restore)
    comes back from Tune's last snapshot, which may predate a trial's end that Optuna's RDB
    storage already holds: Tune then replays the trial's last event, which Optuna refuses as
    an update of a finished trial. Its value is stored already; the replay changes nothing."""
    with contextlib.suppress(UpdateFinishedTrialError):
        _with_retries(call, *args, **kwargs)


class PerArmScheduler(FIFOScheduler):
    """One scheduler per arm for search trials (``make()`` builds it); FIFO for seed runs."""

    def __init__(self, make: Callable[[], TrialScheduler] | None = None) -> None:
        super().__init__()
        self.make = make
        self.schedulers: dict[str, TrialScheduler] = {}
        self._properties: tuple[str | None, str | None] = (None, None)

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self._properties = (metric, mode)
        return True

    def _scheduler(self, trial: Any) -> TrialScheduler | None:
        plan: TrialPlan | None = trial.config.get("run")
        if self.make is None or plan is None or plan.phase != Phase.SEARCH:
            return None
        arm = plan.search_key
        if arm not in self.schedulers:
            scheduler = self.make()
            scheduler.set_search_properties(*self._properties)
            self.schedulers[arm] = scheduler
        return self.schedulers[arm]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if scheduler := self._scheduler(trial):
            scheduler.on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if scheduler := self._scheduler(trial):
            return scheduler.on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if scheduler := self._scheduler(trial):
            scheduler.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if scheduler := self._scheduler(trial):
            scheduler.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"per-arm schedulers: {', '.join(self.schedulers) or 'FIFO'}"
