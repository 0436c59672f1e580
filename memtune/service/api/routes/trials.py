"""The trials: a study's, a page at a time, and one with its metric history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from memtune.service import services
from memtune.service.api.deps import CacheDep, CallerDep, DatabaseDep
from memtune.service.api.routes.common import ONE, Id, Offset, cached
from memtune.service.schemas import TrialDetail, TrialsPublic

router = APIRouter()


@router.get(
    "/studies/{study_id}/trials", response_model=TrialsPublic, tags=["trials"], responses=ONE
)
async def list_trials(
    db: DatabaseDep,
    cache: CacheDep,
    caller: CallerDep,
    study_id: Id,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """The study's trials in the order they started, a page at a time (``count``: all)."""
    return await cached(
        cache,
        ("trials", caller.owner_id, study_id, offset, limit),
        lambda: services.list_trials(
            db, caller=caller, study_id=study_id, offset=offset, limit=limit
        ),
        # not "every trial ended": a running study's page gains trials that are not there yet
    )


@router.get("/trials/{trial_id}", response_model=TrialDetail, tags=["trials"], responses=ONE)
async def get_trial(db: DatabaseDep, cache: CacheDep, caller: CallerDep, trial_id: Id) -> Response:
    """A trial with its metric history, one entry per epoch, and its full error if it failed."""
    return await cached(
        cache,
        ("trial", caller.owner_id, trial_id),
        lambda: services.get_trial(db, caller=caller, trial_id=trial_id),
        lambda trial: trial.state.ended,
    )
