"""The routes, one module per resource as the services are: parse, call a service function,
return a schema. Each documents every status it can answer, with the one error schema.

``router`` assembles them for the app, behind the one check every operation shares: a query
parameter it does not declare is a 422 (:func:`~memtune.service.api.deps.no_unknown_query`).
"""

from fastapi import APIRouter, Depends

from memtune.service.api.deps import no_unknown_query
from memtune.service.api.routes import catalogue, curves, health, studies, trials
from memtune.service.api.routes.common import RETRY_AFTER_S

router = APIRouter(dependencies=[Depends(no_unknown_query)])
router.include_router(studies.router)
router.include_router(trials.router)
router.include_router(curves.router)
router.include_router(catalogue.router)
router.include_router(health.router)

__all__ = ["RETRY_AFTER_S", "router"]
