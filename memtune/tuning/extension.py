"""What a study that runs again keeps of its earlier trials: an extended study (more searches,
trials or seeds after a verdict) runs only what is new."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from memtune.studies.records import Phase, TrialRecord, TrialState, search_key
from memtune.studies.spec import StudySpec

__all__ = ["done_searches", "reusable"]


def reusable(spec: StudySpec, previous: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Of a study's earlier trials, those an extension keeps: every trial of a search that
    ran its whole budget, and the seed runs of its best config that ended (an errored seed run
    is run again); a search set aside (it ran under an older range) is kept as it is, for the
    record. Anything else runs anew."""
    previous = [r for r in previous if r.state.ended]
    kept = []
    for arm in spec.arms:
        for search in spec.searches(arm):
            mine = [r for r in previous if r.arm == arm.label and r.repeat == search.index]
            if search.set_aside:
                kept += mine
                continue
            trials = [r for r in mine if r.phase == Phase.SEARCH]
            if len(trials) < spec.budget.trials_per_search:
                continue
            seeded = [
                r
                for r in mine
                if r.phase == Phase.SEED
                and r.seed in search.rerun_seeds
                and r.state in (TrialState.COMPLETED, TrialState.DIVERGED)
            ]
            kept += trials + seeded
    return kept


def done_searches(
    spec: StudySpec, records: Iterable[TrialRecord]
) -> dict[str, dict[str, Any] | None]:
    """Per search key kept from an earlier run: the config its seed runs trained (an arm that
    searches nothing: its one config, even when its search trial diverged)."""
    pinned = {arm.label for arm in spec.arms if not spec.searched(arm)}
    done: dict[str, dict[str, Any] | None] = {}
    for record in records:
        key = search_key(record.arm, record.repeat)
        if record.phase == Phase.SEED:
            done[key] = record.config
        else:
            done.setdefault(key, record.config if record.arm in pinned else None)
    return done
