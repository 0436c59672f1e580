"""API keys and authentication: keys are stored as hashes; an answer is cached a few seconds
(``MEMTUNE_AUTH_CACHE_S``), and every change to the keys clears the cache."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any

from memtune.service.config import Settings
from memtune.service.services.common import (
    OPEN_OWNER,
    SCOPES,
    Caller,
    Unauthorized,
)
from memtune.service.store.repository import Repository
from memtune.service.store.session import Database


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(db: Database, *, owner: str, scopes: Iterable[str] = ()) -> str:
    """A new key for ``owner`` (created if new), with ``scopes`` (of :data:`SCOPES`); the key
    is returned once, its hash stored."""
    scopes = sorted(set(scopes))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    key = "mt_" + secrets.token_urlsafe(32)
    with db.session() as session:
        repository = Repository(session)
        repository.add_api_key(
            repository.owner_named(owner, create=True), hash_key(key), key[:10], scopes
        )
    _AUTHENTICATED.clear()
    return key


def list_api_keys(db: Database) -> list[dict[str, Any]]:
    """Every key: its prefix (the first characters, to tell keys apart), owner and dates."""
    with db.session() as session:
        return [
            {
                "prefix": key.prefix,
                "owner": key.owner.name,
                "scopes": list(key.scopes or ()),
                "created_at": key.created_at,
                "revoked_at": key.revoked_at,
            }
            for key in Repository(session).api_keys()
        ]


def revoke_api_key(db: Database, *, prefix: str) -> int:
    """Revokes the keys that start with ``prefix``; returns how many (0: none matched)."""
    with db.session() as session:
        revoked = Repository(session).revoke_api_keys(prefix)
    _AUTHENTICATED.clear()
    return revoked


def is_open(db: Database, settings: Settings) -> bool:
    """Open mode: no key in the store and no admin key; the server then binds loopback only."""
    if settings.admin_key:
        return False
    try:  # what authenticating no key found, if it did within the cache's seconds
        expiry, caller = _AUTHENTICATED[(db.url, None, False)]
        if expiry >= time.monotonic():
            return isinstance(caller, Caller)
    except KeyError:
        pass
    with db.session() as session:
        return not Repository(session).has_api_keys()


# (database url, key hash or None, whether an admin key is set) -> (expiry, the caller or the
# refusal); a few seconds of memory so that a request costs no authentication query (a revoke
# takes effect within them).
_AUTHENTICATED: dict[tuple[str, str | None, bool], tuple[float, Caller | Unauthorized]] = {}


def authenticate(db: Database, settings: Settings, *, key: str | None) -> Caller:
    """The caller a key names (or open mode's owner); raises :class:`Unauthorized`."""
    found = authenticate_cached(settings, db=db, key=key)
    if found is None:
        found = (time.monotonic() + settings.auth_cache_s, _authenticate(db, settings, key))
        if len(_AUTHENTICATED) > 10_000:  # bounded: random keys cannot grow it forever
            _AUTHENTICATED.clear()
        _AUTHENTICATED[_auth_cache_key(db, settings, key)] = found
    if isinstance(found[1], Unauthorized):
        raise found[1]
    return found[1]


def _auth_cache_key(db: Database, settings: Settings, key: str | None) -> tuple:
    return (db.url, hash_key(key) if key else None, bool(settings.admin_key))


def authenticate_cached(
    settings: Settings, *, db: Database, key: str | None
) -> tuple[float, Caller | Unauthorized] | None:
    """What :func:`authenticate` would answer without touching the database, or ``None``
    when that needs a query (the API runs the query in a thread, the rest on its loop)."""
    if key and settings.admin_key and hmac.compare_digest(key, settings.admin_key):
        return (float("inf"), Caller(owner_id=None, owner="admin"))
    cached = _AUTHENTICATED.get(_auth_cache_key(db, settings, key))
    if cached is None or cached[0] < time.monotonic():
        return None
    return cached


def _authenticate(db: Database, settings: Settings, key: str | None) -> Caller | Unauthorized:
    """One query: the key's owner, or (no key) whether keys exist and the open owner."""
    with db.session() as session:
        repository = Repository(session)
        if key:
            found = repository.key_and_owner(hash_key(key))
            if found is not None:
                api_key, owner = found
                scopes = frozenset(api_key.scopes or ())
                return Caller(owner_id=owner.id, owner=owner.name, scopes=scopes)
            return Unauthorized("invalid API key")
        if settings.admin_key or repository.has_api_keys():
            return Unauthorized("an API key is required (header X-API-Key)")
        owner = repository.owner_named(OPEN_OWNER, create=True)
        return Caller(owner_id=owner.id, owner=owner.name)
