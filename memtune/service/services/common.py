"""What every service shares: who is calling (:class:`Caller`, its scopes) and the domain
errors the app maps to HTTP in one place (``memtune.service.api.app``)."""

from __future__ import annotations

from dataclasses import dataclass

OPEN_OWNER = "local"


class Unauthorized(PermissionError):
    """No valid API key where one is needed."""


class TooMany(RuntimeError):
    """An owner's queued and running studies are at the configured cap."""


class Conflict(RuntimeError):
    """The request does not fit the resource's state (cancel a finished study, say)."""


class Forbidden(PermissionError):
    """A valid key that may not do this; ``field`` names what needs the scope."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


class InvalidSpec(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


# What a key may be granted beyond its owner's studies. "code": submit a task from code, which
# the workers import and run with their own rights (README: "Tasks from code").
CODE_SCOPE = "code"
SCOPES = (CODE_SCOPE,)


@dataclass(frozen=True)
class Caller:
    owner_id: int | None  # None: the admin, who sees every owner's studies
    owner: str
    scopes: frozenset[str] = frozenset()

    @property
    def may_submit_code(self) -> bool:
        return self.owner_id is None or CODE_SCOPE in self.scopes  # the admin may
