"""The FastAPI application and the one place where domain errors become HTTP statuses.

Every error, whatever raised it, answers ``{"detail": [{"loc", "msg", "type"}]}`` (the
``ErrorResponse`` schema each operation documents): 401 no valid key, 404 missing or not
yours, 409 state conflict, 413 body too large, 422 bad input naming the field, 429 too many
studies queued or running, 503 the database does not answer (with ``Retry-After``: a blink,
not a bug; ``/health`` then says which dependency is down).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memtune.service import services
from memtune.service.api.dashboard import router as dashboard_router
from memtune.service.api.routes import RETRY_AFTER_S, router
from memtune.service.cache import ResponseCache
from memtune.service.config import Settings
from memtune.service.store.repository import NotFound
from memtune.service.store.session import Database
from memtune.studies.spec import locate

log = logging.getLogger(__name__)


def _body(status: int, loc: list, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"detail": [{"loc": [str(p) for p in loc], "msg": message, "type": kind}]}


def _error(status: int, loc: list, message: str, kind: str) -> JSONResponse:
    code, content = _body(status, loc, message, kind)
    return JSONResponse(content, status_code=code)


class BodyLimit:
    """Answers 413 to a body over ``max_bytes`` before it is read whole: at once from its
    Content-Length, or as soon as a chunked body passes the limit (at most the limit is
    buffered), so a large body costs neither parsing nor memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, send: Send) -> None:
        status, content = _body(
            413, ["body"], f"the body is over {self.max_bytes} bytes", "too_large"
        )
        payload = json.dumps(content).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []  # chunked: read up to the limit, then replay
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


# Imported beside startup, off the request path: the dashboard's first GET /studies/{id}/curves
# needs scipy's t quantile, whose import was most of a study page's first render
# (bench/dashboard_load.py, docs/benchmarks.md). A request that comes earlier waits for the same import, no longer.
WARM_IMPORTS = ("memtune.studies.stats",)


def _warm_imports() -> None:
    for module in WARM_IMPORTS:
        try:
            importlib.import_module(module)
        except ImportError:  # the service without the studies extra: the route says so itself
            log.debug("could not import %s ahead of time", module, exc_info=True)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    threading.Thread(target=_warm_imports, name="memtune-warm-imports", daemon=True).start()
    yield


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title="memtune",
        summary="Does this memory-based optimizer beat my tuned baseline? Studies on Ray Tune + Optuna.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url, upgrade=settings.migrate_on_start)
    app.state.cache = ResponseCache()
    app.include_router(router)
    app.include_router(dashboard_router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # Only where and why: pydantic's ctx may hold exception objects, never sent out.
        details = []
        for e in error.errors():
            loc, message = locate({"loc": e.get("loc", ()), "msg": e.get("msg", "invalid"),
                                   "type": e.get("type", "")})  # fmt: skip
            details.append({"loc": loc, "msg": message, "type": str(e.get("type", ""))})
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400:  # a body FastAPI could not parse (too deep, say)
            return _error(422, ["body"], str(error.detail), "json_invalid")
        response = _error(error.status_code, [], str(error.detail), "http_error")
        response.headers.update(error.headers or {})
        if error.status_code == 405:  # every method of the path, not only the first route's
            methods = {
                method
                for route in app.routes
                if getattr(route, "path_regex", None) and route.path_regex.match(request.url.path)
                for method in getattr(route, "methods", ()) or ()
            }
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(services.InvalidSpec)
    async def invalid_spec(request: Request, error: services.InvalidSpec) -> JSONResponse:
        return _error(422, ["body", *error.field.split(".")], error.message, "invalid_spec")

    @app.exception_handler(services.Forbidden)
    async def forbidden(request: Request, error: services.Forbidden) -> JSONResponse:
        return _error(403, ["body", *error.field.split(".")], error.message, "forbidden")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return _error(404, [], f"{error} does not exist or is not yours", "not_found")

    @app.exception_handler(services.Conflict)
    async def conflict(request: Request, error: services.Conflict) -> JSONResponse:
        return _error(409, [], str(error), "conflict")

    @app.exception_handler(services.TooMany)
    async def too_many(request: Request, error: services.TooMany) -> JSONResponse:
        return _error(429, [], str(error), "too_many")

    @app.exception_handler(services.Unauthorized)
    async def unauthorized(request: Request, error: services.Unauthorized) -> JSONResponse:
        response = _error(401, ["header", "X-API-Key"], str(error), "unauthorized")
        response.headers["WWW-Authenticate"] = "ApiKey"
        return response

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
        # A connection refused or dropped: the client should come back, not report a bug.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(getattr(error, "orig", error)).__name__)  # fmt: skip
        response = _error(503, [], "the database does not answer; retry shortly", "unavailable")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, [], "internal error (logged on the server)", "internal")

    return app


def app_from_environment() -> FastAPI:
    """``uvicorn --factory memtune.service.api.app:app_from_environment``: settings from the
    environment."""
    from memtune.service.config import get_settings

    return create_app(get_settings())
