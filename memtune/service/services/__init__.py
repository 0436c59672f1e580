"""The logic the routes call, one module per resource: keyword-only functions over a
Database, returning schemas.

Domain errors are the exceptions of :mod:`~memtune.service.services.common` (and the
repository's NotFound); the app maps them to HTTP in one place. Nothing here imports torch or
Ray: the spec and the registries are torch-free, and the worker runs the checks that need
torch. Everything is importable from this package, as before it was split.
"""

from memtune.service.services.catalogue import list_optimizers, list_tasks
from memtune.service.services.common import (
    CODE_SCOPE,
    OPEN_OWNER,
    SCOPES,
    Caller,
    Conflict,
    Forbidden,
    InvalidSpec,
    TooMany,
    Unauthorized,
)
from memtune.service.services.curves import (
    SEARCH_CURVES,
    get_curves,
    keep_curves,
    study_curves,
)
from memtune.service.services.keys import (
    authenticate,
    authenticate_cached,
    create_api_key,
    hash_key,
    is_open,
    list_api_keys,
    revoke_api_key,
)
from memtune.service.services.studies import (
    cancel_study,
    create_study,
    export_study,
    extend_study,
    get_study,
    get_verdict,
    list_studies,
)
from memtune.service.services.trials import get_trial, list_trials, trial_public
from memtune.service.store.repository import NotFound

__all__ = [
    "CODE_SCOPE",
    "OPEN_OWNER",
    "SCOPES",
    "SEARCH_CURVES",
    "Caller",
    "Conflict",
    "Forbidden",
    "InvalidSpec",
    "NotFound",
    "TooMany",
    "Unauthorized",
    "authenticate",
    "authenticate_cached",
    "cancel_study",
    "create_api_key",
    "create_study",
    "export_study",
    "extend_study",
    "get_curves",
    "get_study",
    "get_trial",
    "get_verdict",
    "hash_key",
    "is_open",
    "keep_curves",
    "list_api_keys",
    "list_optimizers",
    "list_studies",
    "list_tasks",
    "list_trials",
    "revoke_api_key",
    "study_curves",
    "trial_public",
]
