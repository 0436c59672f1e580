"""Trials: a study's trials a page at a time, and one trial with its history."""

from __future__ import annotations

from memtune.service.schemas import (
    EpochMetrics,
    TrialDetail,
    TrialPublic,
    TrialsPublic,
)
from memtune.service.services.common import (
    Caller,
)
from memtune.service.store.models import Trial
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database


def trial_public(trial: Trial) -> TrialPublic:
    return TrialPublic.model_validate(trial)


def list_trials(
    db: Database, *, caller: Caller, study_id: int, offset: int = 0, limit: int = 100
) -> TrialsPublic:
    with db.session() as session:
        repository = Repository(session)
        repository.find_study(study_id, caller.owner_id)
        rows, count = repository.trials_page(study_id, offset=offset, limit=limit)
        return TrialsPublic(data=[trial_public(t) for t in rows], count=count)


def get_trial(db: Database, *, caller: Caller, trial_id: int) -> TrialDetail:
    with db.session() as session:
        repository = Repository(session)
        trial = repository.find_trial(trial_id, caller.owner_id)
        history = repository.metrics_of([trial.id])[trial.id]
        return TrialDetail(
            **trial_public(trial).model_dump(),
            history=[
                EpochMetrics(epoch=m.epoch, attempt=m.attempt, values=m.values) for m in history
            ],
            traceback=trial.traceback,
        )
