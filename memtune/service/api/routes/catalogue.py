"""The catalogue: the installed optimizers and tasks, built-in and plugins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from memtune.service import services
from memtune.service.api.routes.common import Offset, errors
from memtune.service.schemas import OptimizersPublic, TasksPublic

router = APIRouter()


@router.get(
    "/optimizers",
    response_model=OptimizersPublic,
    tags=["catalogue"],
    responses=errors(422),
)
def list_optimizers(
    offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> OptimizersPublic:
    """The installed optimizers, built-in and plugins; plugins that failed to load in errors."""
    return services.list_optimizers(offset=offset, limit=limit)


@router.get("/tasks", response_model=TasksPublic, tags=["catalogue"], responses=errors(422))
def list_tasks(offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=100)] = 100) -> TasksPublic:
    """The installed tasks, built-in and plugins; plugins that failed to load in errors."""
    return services.list_tasks(offset=offset, limit=limit)
