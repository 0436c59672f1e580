"""Databases for the service tests: a SQLite file, and a fresh PostgreSQL database per module.

PostgreSQL comes from MEMTUNE_TEST_POSTGRES_URL (``.ci/run`` sets it), or the server this
project's machines run at 127.0.0.1:5432; without either its tests skip and say why.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from memtune.service.store.session import Database, get_engine, normalize_url

NAMED_URL = os.environ.get("MEMTUNE_TEST_POSTGRES_URL")
POSTGRES_URL = NAMED_URL or "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_database() -> tuple[str, callable]:
    admin = create_engine(normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = f"memtune_test_{uuid.uuid4().hex[:10]}"
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # no server: skip, saying where we looked, unless one was named
        admin.dispose()
        if NAMED_URL:
            raise
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_URL} ({type(error).__name__}); set MEMTUNE_TEST_POSTGRES_URL"
        )

    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        get_engine(normalize_url(url)).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'memtune.db'}"
        return
    url, drop = _postgres_database()
    yield url
    drop()


@pytest.fixture
def db(database_url) -> Database:
    return Database(database_url)
