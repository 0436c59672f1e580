"""Databases for the service tests: a SQLite file, and a fresh PostgreSQL database per module.

PostgreSQL comes from MEMTUNE_TEST_POSTGRES_URL (``.ci/run`` sets it), or the server this
project's machines run at 127.0.0.1:5432; without either its tests skip and say why.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from memtune.service.api.app import create_app
from memtune.service.config import Settings
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningServer:
    """The API app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, url: str, **settings) -> None:
        self.db = Database(url)
        self.port = free_port()
        config = uvicorn.Config(
            create_app(Settings(database_url=url, **settings), self.db),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"X-API-Key": key} if key else {}, timeout=60
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def worker_server(tmp_path_factory):
    """The API and a real worker process (``memtune worker``) on one SQLite database, shared
    by a module's tests (a worker's start, its Ray among it, is seconds): each test reads its
    own studies."""
    import subprocess
    import sys

    tmp_path = tmp_path_factory.mktemp("worker_server")
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    running = RunningServer(url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "memtune", "worker"],
        env={
            **os.environ,
            "DATABASE_URL": url,
            "MEMTUNE_LEASE_S": "6",
            "MEMTUNE_STORAGE": str(tmp_path / "storage"),
        },
    )
    yield running
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
    running.stop()
