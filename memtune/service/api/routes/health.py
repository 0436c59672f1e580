"""The readiness probe: whether this API can serve, or which dependency does not answer."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy.exc import InterfaceError, OperationalError

from memtune.service import services
from memtune.service.api.deps import DatabaseDep, SettingsDep
from memtune.service.api.routes.common import RETRY_AFTER_S
from memtune.service.schemas import Health

router = APIRouter()


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
