"""What every route module shares: the path and paging parameters, the statuses each
operation documents (with the one error schema), and the response cache the read routes
answer from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Path, Query, Response
from pydantic import BaseModel, TypeAdapter

from memtune.service.cache import ResponseCache
from memtune.service.schemas import ErrorResponse
from memtune.studies.verdict import Verdict

# What a client waits before it asks again while the database does not answer: about the time
# a dropped PostgreSQL connection (a restart, a failover, a proxy's blink) takes to come back.
RETRY_AFTER_S = 5
# Ids are 32-bit in the store: larger ones are answered 422 by validation, not by the database.
Id = Annotated[int, Path(ge=1, le=2_147_483_647)]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]


def errors(*codes: int) -> dict[int | str, dict]:
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


async def cached(
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


AUTH = errors(401, 422)  # every operation that reads the key validates its parameters too
ONE = errors(401, 404, 422)
