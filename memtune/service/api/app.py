"""The FastAPI application and the one place where domain errors become HTTP statuses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from memtune.service import services
from memtune.service.api.dashboard import router as dashboard_router
from memtune.service.api.routes import router
from memtune.service.config import Settings
from memtune.service.store.repository import NotFound
from memtune.service.store.session import Database

log = logging.getLogger(__name__)


def _error(status: int, loc: list, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": message, "type": kind}]}, status_code=status
    )


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    app = FastAPI(
        title="memtune",
        summary="Does this memory-based optimizer beat my tuned baseline? Studies on Ray Tune + Optuna.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)
    app.include_router(router)
    app.include_router(dashboard_router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # Only where and why: pydantic's ctx may hold exception objects, never sent out.
        details = [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "")),
            }
            for e in error.errors()
        ]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(services.InvalidSpec)
    async def invalid_spec(request: Request, error: services.InvalidSpec) -> JSONResponse:
        return _error(422, ["body", *error.field.split(".")], error.message, "invalid_spec")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return _error(404, [], f"{error} does not exist or is not yours", "not_found")

    @app.exception_handler(services.Conflict)
    async def conflict(request: Request, error: services.Conflict) -> JSONResponse:
        return _error(409, [], str(error), "conflict")

    @app.exception_handler(services.Unauthorized)
    async def unauthorized(request: Request, error: services.Unauthorized) -> JSONResponse:
        response = _error(401, ["header", "X-API-Key"], str(error), "unauthorized")
        response.headers["WWW-Authenticate"] = "ApiKey"
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, [], "internal error (logged on the server)", "internal")

    return app


def app_from_environment() -> FastAPI:
    """``uvicorn --factory service.api.app:app_from_environment``: settings from the environment."""
    from memtune.service.config import get_settings

    return create_app(get_settings())
