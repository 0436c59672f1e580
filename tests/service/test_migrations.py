"""Schema changes are Alembic revisions; an old database upgrades with its data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from memtune.service.store.models import Base
from memtune.service.store.session import get_engine, migrate, normalize_url


def test_database_at_the_first_revision_upgrades_and_keeps_its_studies(database_url):
    migrate(database_url, "0001_studies_trials_metrics")
    engine = get_engine(normalize_url(database_url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO memtune_studies (name, task, spec, status, cancel_requested, total_trials, attempt, created_at) "
                "VALUES ('old', 'digits_mlp', '{}', 'completed', false, 4, 1, CURRENT_TIMESTAMP)"
            )
        )
    migrate(database_url)
    with engine.connect() as connection:
        owner = connection.execute(
            text(
                "SELECT o.name FROM memtune_studies s JOIN memtune_owners o ON o.id = s.owner_id WHERE s.name = 'old'"
            )
        ).scalar()
    assert owner == "local"


def test_models_and_migrations_describe_the_same_schema(database_url):
    migrate(database_url)
    with get_engine(normalize_url(database_url)).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": "memtune_alembic_version"}
        )
        differences = compare_metadata(context, Base.metadata)
    assert [d for d in differences if "memtune_alembic_version" not in str(d)] == []
