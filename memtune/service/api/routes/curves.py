"""A study's curves: what the dashboard plots, aggregated on the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from memtune.service import services
from memtune.service.api.deps import CacheDep, CallerDep, DatabaseDep
from memtune.service.api.routes.common import ONE, Id, cached
from memtune.service.schemas import StudyCurves

router = APIRouter()


@router.get(
    "/studies/{study_id}/curves", response_model=StudyCurves, tags=["studies"], responses=ONE
)
async def get_curves(
    db: DatabaseDep,
    cache: CacheDep,
    caller: CallerDep,
    study_id: Id,
    search_curves: Annotated[
        int, Query(ge=0, le=200, description="search trials per arm whose curve is sent")
    ] = services.SEARCH_CURVES,
) -> Response:
    """Per arm and epoch: the seed runs' mean metric with its 95% interval, mean training time
    and (adaptive-memory arms) mean beta; a sample of the search trials' curves; every search
    trial's config and final value. What the dashboard plots, aggregated on the server."""
    return await cached(
        cache,
        ("curves", caller.owner_id, study_id, search_curves),
        lambda: services.get_curves(
            db, caller=caller, study_id=study_id, search_curves=search_curves
        ),
        lambda curves: False,  # a live study's curves grow: re-read after a second
    )
