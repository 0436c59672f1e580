"""The routes: parse, call a service function, return a schema. Each documents every status
it can answer, with the one error schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status
from pydantic import BaseModel, TypeAdapter
from sqlalchemy.exc import InterfaceError, OperationalError

from memtune.service import services
from memtune.service.api.deps import (
    CacheDep,
    CallerDep,
    DatabaseDep,
    SettingsDep,
    no_unknown_query,
)
from memtune.service.cache import ResponseCache
from memtune.service.schemas import (
    ErrorResponse,
    Health,
    OptimizersPublic,
    StudiesPublic,
    StudyCurves,
    StudyExtension,
    StudyPublic,
    StudySubmission,
    TasksPublic,
    TrialDetail,
    TrialsPublic,
)
from memtune.studies.records import StudyStatus
from memtune.studies.verdict import Verdict

router = APIRouter(dependencies=[Depends(no_unknown_query)])

SPEC_EXAMPLE = {
    "name": "demo",
    "task": "digits_mlp",
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    "budget": {"searches": 6, "trials_per_search": 3, "epochs": 3},
}
# What a client waits before it asks again while the database does not answer: about the time
# a dropped PostgreSQL connection (a restart, a failover, a proxy's blink) takes to come back.
RETRY_AFTER_S = 5
# Ids are 32-bit in the store: larger ones are answered 422 by validation, not by the database.
Id = Annotated[int, Path(ge=1, le=2_147_483_647)]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]


def _errors(*codes: int) -> dict[int | str, dict]:
    described = {
        401: "no valid API key (X-API-Key)",
        403: "the key lacks a scope the request needs; loc names the field",
        404: "no such resource, or not yours",
        409: "the resource's state does not allow it",
        413: "the body is over the configured size",
        422: "bad input; loc names the field",
        429: "too many of your studies are queued or running",
        503: "the database does not answer: retry after the Retry-After seconds",
    }
    return {
        code: {"model": ErrorResponse, "description": described[code]} for code in (*codes, 503)
    }


# Ended resources change only through this API (cancel, extend: the cache is cleared); others
# are re-read after a second.
ENDED_TTL_S, LIVE_TTL_S = 10.0, 1.0
_VERDICT_JSON = TypeAdapter(Verdict)


async def _cached(
    cache: ResponseCache,
    key: tuple,
    read: Callable[[], Any],
    ended: Callable[[Any], bool] = lambda value: False,
) -> Response:
    """``read()``'s answer, serialized once and kept ENDED_TTL_S when ``ended`` says it can no
    longer change (else LIVE_TTL_S); errors are raised, never kept.

    The read routes are ``async`` so that a cached answer is served on the event loop without
    a hop to the thread pool; a miss reads the store in the pool.
    """

    def compute() -> tuple[bytes, float]:
        value = read()
        body = (
            value.model_dump_json().encode()
            if isinstance(value, BaseModel)
            else _VERDICT_JSON.dump_json(value)
        )
        return body, ENDED_TTL_S if ended(value) else LIVE_TTL_S

    return Response(await cache.get(key, compute), media_type="application/json")


AUTH = _errors(401, 422)  # every operation that reads the key validates its parameters too
ONE = _errors(401, 404, 422)


@router.post(
    "/studies",
    response_model=StudyPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["studies"],
    responses=_errors(401, 403, 413, 422, 429),
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
    return await _cached(
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
    return await _cached(
        cache,
        ("study", caller.owner_id, study_id),
        lambda: services.get_study(db, caller=caller, study_id=study_id),
        lambda study: study.status.ended,
    )


@router.post(
    "/studies/{study_id}/cancel",
    response_model=StudyPublic,
    tags=["studies"],
    responses=_errors(401, 404, 409, 422),
)
def cancel_study(db: DatabaseDep, cache: CacheDep, caller: CallerDep, study_id: Id) -> StudyPublic:
    """Cancels a queued study at once; a running one within seconds (409 once it ended)."""
    cache.clear()
    return services.cancel_study(db, caller=caller, study_id=study_id)


@router.post(
    "/studies/{study_id}/extend",
    response_model=StudyPublic,
    tags=["studies"],
    responses=_errors(401, 404, 409, 413, 422, 429),
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
    return await _cached(
        cache,
        ("trials", caller.owner_id, study_id, offset, limit),
        lambda: services.list_trials(
            db, caller=caller, study_id=study_id, offset=offset, limit=limit
        ),
        # not "every trial ended": a running study's page gains trials that are not there yet
    )


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
    return await _cached(
        cache,
        ("curves", caller.owner_id, study_id, search_curves),
        lambda: services.get_curves(
            db, caller=caller, study_id=study_id, search_curves=search_curves
        ),
        lambda curves: False,  # a live study's curves grow: re-read after a second
    )


@router.get("/trials/{trial_id}", response_model=TrialDetail, tags=["trials"], responses=ONE)
async def get_trial(db: DatabaseDep, cache: CacheDep, caller: CallerDep, trial_id: Id) -> Response:
    """A trial with its metric history, one entry per epoch, and its full error if it failed."""
    return await _cached(
        cache,
        ("trial", caller.owner_id, trial_id),
        lambda: services.get_trial(db, caller=caller, trial_id=trial_id),
        lambda trial: trial.state.ended,
    )


@router.get(
    "/studies/{study_id}/verdict",
    response_model=Verdict,
    tags=["studies"],
    responses=_errors(401, 404, 409, 422),
)
async def get_verdict(
    db: DatabaseDep, cache: CacheDep, caller: CallerDep, study_id: Id
) -> Response:
    """Per-arm summaries, paired comparisons, rules, warnings and how it was made (409 until
    the study completed). Non-finite numbers are the strings "nan", "inf", "-inf"."""
    return await _cached(
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


@router.get(
    "/optimizers",
    response_model=OptimizersPublic,
    tags=["catalogue"],
    responses=_errors(422),
)
def list_optimizers(
    offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> OptimizersPublic:
    """The installed optimizers, built-in and plugins; plugins that failed to load in errors."""
    return services.list_optimizers(offset=offset, limit=limit)


@router.get("/tasks", response_model=TasksPublic, tags=["catalogue"], responses=_errors(422))
def list_tasks(offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=100)] = 100) -> TasksPublic:
    """The installed tasks, built-in and plugins; plugins that failed to load in errors."""
    return services.list_tasks(offset=offset, limit=limit)


@router.get(
    "/health",
    response_model=Health,
    tags=["catalogue"],
    responses={503: {"model": Health, "description": "a dependency does not answer: see down"}},
)
def health(db: DatabaseDep, settings: SettingsDep, response: Response) -> Health:
    """Whether this API can serve: 200, or 503 naming the dependencies that do not answer (a
    readiness probe takes the pod out of service and brings it back)."""
    try:
        db.ping()
        open_mode = services.is_open(db, settings)
    except (OperationalError, InterfaceError):
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return Health(
            status="unavailable",
            database=db.engine.dialect.name,
            open_mode=False,
            down=["database"],
        )
    return Health(status="ok", database=db.engine.dialect.name, open_mode=open_mode)
