"""The studies: submit, list, read, cancel, extend; the verdict and the export of a completed
one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response, status

from memtune.service import services
from memtune.service.api.deps import CacheDep, CallerDep, DatabaseDep, SettingsDep
from memtune.service.api.routes.common import AUTH, ONE, Id, Offset, cached, errors
from memtune.service.schemas import StudiesPublic, StudyExtension, StudyPublic, StudySubmission
from memtune.studies.records import StudyStatus
from memtune.studies.verdict import Verdict

router = APIRouter()

SPEC_EXAMPLE = {
    "name": "demo",
    "task": "digits_mlp",
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    "budget": {"searches": 6, "trials_per_search": 3, "epochs": 3},
}


@router.post(
    "/studies",
    response_model=StudyPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["studies"],
    responses=errors(401, 403, 413, 422, 429),
)
def create_study(
    db: DatabaseDep,
    settings: SettingsDep,
    cache: CacheDep,
    caller: CallerDep,
    spec: Annotated[StudySubmission, Body(examples=[SPEC_EXAMPLE])],
) -> StudyPublic:
    """Queues a study; a worker picks it up. The spec is validated here (422 names the field);
    what it lets through but you should know is in ``warnings``. A task from code comes with
    its files in ``code`` and needs a key with the code scope (403 names ``task``); this
    process never imports them."""
    cache.clear()
    return services.create_study(
        db,
        caller=caller,
        spec=spec.spec(),
        code=spec.code,
        inventory_max_age_s=settings.inventory_max_age_s,
        max_active=settings.max_active_studies,
    )


@router.get("/studies", response_model=StudiesPublic, tags=["studies"], responses=AUTH)
async def list_studies(
    db: DatabaseDep,
    cache: CacheDep,
    caller: CallerDep,
    status_: Annotated[StudyStatus | None, Query(alias="status")] = None,
    task: Annotated[str | None, Query(max_length=100)] = None,
    optimizer: Annotated[str | None, Query(max_length=100)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """Your studies, newest first; ``count`` is the total across pages."""
    return await cached(
        cache,
        ("studies", caller.owner_id, status_, task, optimizer, offset, limit),
        lambda: services.list_studies(
            db,
            caller=caller,
            status=status_,
            task=task,
            optimizer=optimizer,
            offset=offset,
            limit=limit,
        ),
    )


@router.get("/studies/{study_id}", response_model=StudyPublic, tags=["studies"], responses=ONE)
async def get_study(db: DatabaseDep, cache: CacheDep, caller: CallerDep, study_id: Id) -> Response:
    """Status and progress: trials done / total per arm, and the best metric so far."""
    return await cached(
        cache,
        ("study", caller.owner_id, study_id),
        lambda: services.get_study(db, caller=caller, study_id=study_id),
        lambda study: study.status.ended,
    )


@router.post(
    "/studies/{study_id}/cancel",
    response_model=StudyPublic,
    tags=["studies"],
    responses=errors(401, 404, 409, 422),
)
def cancel_study(db: DatabaseDep, cache: CacheDep, caller: CallerDep, study_id: Id) -> StudyPublic:
    """Cancels a queued study at once; a running one within seconds (409 once it ended)."""
    cache.clear()
    return services.cancel_study(db, caller=caller, study_id=study_id)


@router.post(
    "/studies/{study_id}/extend",
    response_model=StudyPublic,
    tags=["studies"],
    responses=errors(401, 404, 409, 413, 422, 429),
)
def extend_study(
    db: DatabaseDep,
    settings: SettingsDep,
    cache: CacheDep,
    caller: CallerDep,
    study_id: Id,
    extension: StudyExtension,
) -> StudyPublic:
    """Queues a completed study again with more seeds, arms, searches per arm, or wider ranges
    for an arm (its earlier searches are then set aside); what ran is reused and the verdict is
    recomputed (422 names a bad field, 409 unless the study completed)."""
    cache.clear()
    return services.extend_study(
        db,
        caller=caller,
        study_id=study_id,
        extension=extension,
        inventory_max_age_s=settings.inventory_max_age_s,
        max_active=settings.max_active_studies,
    )


@router.get(
    "/studies/{study_id}/verdict",
    response_model=Verdict,
    tags=["studies"],
    responses=errors(401, 404, 409, 422),
)
async def get_verdict(
    db: DatabaseDep, cache: CacheDep, caller: CallerDep, study_id: Id
) -> Response:
    """Per-arm summaries, paired comparisons, rules, warnings and how it was made (409 until
    the study completed). Non-finite numbers are the strings "nan", "inf", "-inf"."""
    return await cached(
        cache,
        ("verdict", caller.owner_id, study_id),
        lambda: services.get_verdict(db, caller=caller, study_id=study_id),
        lambda verdict: True,  # a verdict exists once its study completed
    )


@router.get(
    "/studies/{study_id}/export",
    tags=["studies"],
    responses={
        200: {
            "description": "every trial and epoch",
            "content": {"application/json": {}, "text/csv": {}},
        },
        **ONE,
    },
)
def export_study(
    db: DatabaseDep, caller: CallerDep, study_id: Id, format: Literal["csv", "json"] = "json"
) -> Response:
    """Every trial and epoch, as CSV (one row per epoch) or JSON."""
    media_type, body = services.export_study(db, caller=caller, study_id=study_id, format=format)
    filename = f"study-{study_id}.{format}"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
