"""The service's settings: one typed object read from the environment (``MEMTUNE_*``)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_database_url() -> str:
    from platformdirs import user_data_dir

    directory = Path(user_data_dir("memtune"))
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'memtune.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMTUNE_", extra="ignore")

    # DATABASE_URL without the prefix too: it is the name every platform uses.
    database_url: str = Field(default_factory=default_database_url, validation_alias="DATABASE_URL")
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: str | None = Field(None, description="sees and manages every owner's studies")
    lease_s: float = Field(
        30.0, gt=1, description="a worker's claim on a study; renewed at a third"
    )
    poll_s: float = Field(
        1.0, gt=0, description="how often an idle worker looks for queued studies"
    )
    max_body_bytes: int = Field(
        1_000_000, gt=0, description="a request body over this size is answered 413 unread"
    )
    max_active_studies: int = Field(
        20, ge=1, description="per owner: queued and running studies; past it, 429"
    )
    auth_cache_s: float = Field(
        5.0, ge=0, description="how long a key's owner is remembered (a revoke takes this long)"
    )
    inventory_s: float = Field(
        60.0, gt=0, description="how often an idle worker re-records the cluster's nodes"
    )
    max_studies: int = Field(
        1,
        ge=1,
        description="studies one worker runs at once, each in its own Ray task; each gets "
        "at most 1/N of the cluster's trial slots",
    )
    storage: str | None = Field(
        None,
        description="where studies' Tune experiments and checkpoints live, one prefix per "
        "study: a path every Ray node mounts or a URI Tune accepts (s3://bucket/prefix); "
        "default: a directory under the user data dir, refused on a cluster of several nodes",
    )
    inventory_max_age_s: float = Field(
        600.0,
        gt=0,
        description="the API checks submissions against nodes reported within this long",
    )
    migrate_on_start: bool = Field(
        True,
        description="upgrade the database's schema when the API or a worker starts; off where "
        "a job runs `memtune migrate` first (Kubernetes), so that replicas never race",
    )


def study_storage(settings: Settings, study_id: int) -> tuple[str, bool]:
    """Where study ``study_id`` keeps its Tune experiment, and whether every node reaches it
    (an operator who names MEMTUNE_STORAGE says so; the default is this machine's disk).

    The prefix names the database too (a hash of its URL): two services on one machine, or
    one storage for several deployments, never share a study's experiment."""
    database = hashlib.sha256(settings.database_url.encode()).hexdigest()[:10]
    if settings.storage:
        return f"{settings.storage.rstrip('/')}/{database}/study-{study_id}", True
    from platformdirs import user_data_dir

    root = Path(user_data_dir("memtune")) / "runs"
    return str(root / database / f"study-{study_id}"), False


@functools.cache
def get_settings() -> Settings:
    return Settings()
