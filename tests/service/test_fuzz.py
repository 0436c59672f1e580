"""Property-based fuzzing of the API from its OpenAPI schema: no input gives a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis

from service.api.app import create_app
from service.config import Settings
from service.store.session import Database

_URL = f"sqlite:///{Path(tempfile.mkdtemp(prefix='memtune-fuzz-')) / 'fuzz.db'}"
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(database_url=_URL), Database(_URL))
)


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=25, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_no_input_gives_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
