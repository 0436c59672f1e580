"""Dependencies of the routes: the database, the settings, and who is calling.

They are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a hop that
costs more than the work of these (attribute reads, a dictionary lookup). The one that may
query the database does that part in the pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from memtune.service import services
from memtune.service.cache import ResponseCache
from memtune.service.config import Settings
from memtune.service.store.session import Database

_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="memtune apikey create --owner NAME"
)


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_cache(request: Request) -> ResponseCache:
    return request.app.state.cache


DatabaseDep = Annotated[Database, Depends(get_db)]
CacheDep = Annotated[ResponseCache, Depends(get_cache)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_caller(
    db: DatabaseDep, settings: SettingsDep, key: Annotated[str | None, Security(_api_key)]
) -> services.Caller:
    found = services.authenticate_cached(settings, db=db, key=key)
    if found is None:
        return await run_in_threadpool(services.authenticate, db, settings, key=key)
    if isinstance(found[1], services.Unauthorized):
        raise found[1]
    return found[1]


CallerDep = Annotated[services.Caller, Depends(get_caller)]


async def no_unknown_query(request: Request) -> None:
    """A query parameter the operation does not declare is an error, not ignored: a typo
    (``?statu=queued``) would otherwise silently list everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in _query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this operation takes {', '.join(sorted(known)) or 'none'}",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def _query_params(dependant) -> list:
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found += _query_params(sub)
    return found
