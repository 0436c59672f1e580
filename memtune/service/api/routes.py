"""The routes: parse, call a service function, return a schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response, status
from fastapi.responses import JSONResponse

from memtune.service import services
from memtune.service.api.deps import CallerDep, DatabaseDep, SettingsDep
from memtune.service.schemas import (
    Health,
    OptimizersPublic,
    StudiesPublic,
    StudyExtension,
    StudyPublic,
    TasksPublic,
    TrialDetail,
    TrialsPublic,
)

router = APIRouter()

SPEC_EXAMPLE = {
    "name": "demo",
    "task": "digits_mlp",
    "arms": [{"optimizer": "sgd", "baseline": True}, {"optimizer": "am_sgd"}],
    "budget": {"trials_per_arm": 4, "epochs": 3},
    "seeds": [0, 1, 2],
}
# Ids are 32-bit in the store: larger ones are answered 404 by validation, not by the database.
Id = Annotated[int, Path(ge=1, le=2_147_483_647)]


@router.post(
    "/studies", response_model=StudyPublic, status_code=status.HTTP_201_CREATED, tags=["studies"]
)
def create_study(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    spec: Annotated[dict[str, Any], Body(examples=[SPEC_EXAMPLE])],
) -> StudyPublic:
    """Queues a study; a worker picks it up. The spec is validated here (422 names the field)."""
    return services.create_study(
        db, caller=caller, spec=spec, inventory_max_age_s=settings.inventory_max_age_s
    )


@router.get("/studies", response_model=StudiesPublic, tags=["studies"])
def list_studies(
    db: DatabaseDep,
    caller: CallerDep,
    status_: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None,
        Query(alias="status"),
    ] = None,
    task: Annotated[str | None, Query(max_length=100)] = None,
    optimizer: Annotated[str | None, Query(max_length=100)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> StudiesPublic:
    """Your studies, newest first."""
    return services.list_studies(
        db,
        caller=caller,
        status=status_,
        task=task,
        optimizer=optimizer,
        offset=offset,
        limit=limit,
    )


@router.get("/studies/{study_id}", response_model=StudyPublic, tags=["studies"])
def get_study(db: DatabaseDep, caller: CallerDep, study_id: Id) -> StudyPublic:
    """Status and progress: trials done / total per arm, and the best metric so far."""
    return services.get_study(db, caller=caller, study_id=study_id)


@router.post("/studies/{study_id}/cancel", response_model=StudyPublic, tags=["studies"])
def cancel_study(db: DatabaseDep, caller: CallerDep, study_id: Id) -> StudyPublic:
    """Cancels a queued study at once; a running one within seconds (409 once it ended)."""
    return services.cancel_study(db, caller=caller, study_id=study_id)


@router.post("/studies/{study_id}/extend", response_model=StudyPublic, tags=["studies"])
def extend_study(
    db: DatabaseDep,
    settings: SettingsDep,
    caller: CallerDep,
    study_id: Id,
    extension: StudyExtension,
) -> StudyPublic:
    """Queues a completed study again with more seeds and/or arms; what ran is reused and the
    verdict is recomputed (422 names a bad field, 409 unless the study completed)."""
    return services.extend_study(
        db,
        caller=caller,
        study_id=study_id,
        seeds=extension.seeds,
        arms=extension.arms,
        inventory_max_age_s=settings.inventory_max_age_s,
    )


@router.get("/studies/{study_id}/trials", response_model=TrialsPublic, tags=["trials"])
def list_trials(db: DatabaseDep, caller: CallerDep, study_id: Id) -> TrialsPublic:
    return services.list_trials(db, caller=caller, study_id=study_id)


@router.get("/trials/{trial_id}", response_model=TrialDetail, tags=["trials"])
def get_trial(db: DatabaseDep, caller: CallerDep, trial_id: Id) -> TrialDetail:
    """A trial with its metric history, one entry per epoch."""
    return services.get_trial(db, caller=caller, trial_id=trial_id)


@router.get("/studies/{study_id}/verdict", tags=["studies"])
def get_verdict(db: DatabaseDep, caller: CallerDep, study_id: Id) -> Response:
    """Per-arm summaries and the paired comparisons with the baseline (409 until completed)."""
    return JSONResponse(services.get_verdict(db, caller=caller, study_id=study_id))


@router.get("/studies/{study_id}/export", tags=["studies"])
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


@router.get("/optimizers", response_model=OptimizersPublic, tags=["catalogue"])
def list_optimizers() -> OptimizersPublic:
    """The installed optimizers, built-in and plugins; plugins that failed to load in errors."""
    return services.list_optimizers()


@router.get("/tasks", response_model=TasksPublic, tags=["catalogue"])
def list_tasks() -> TasksPublic:
    """The installed tasks, built-in and plugins; plugins that failed to load in errors."""
    return services.list_tasks()


@router.get("/health", response_model=Health, tags=["catalogue"])
def health(db: DatabaseDep, settings: SettingsDep) -> Health:
    return Health(
        status="ok", database=db.engine.dialect.name, open_mode=services.is_open(db, settings)
    )
