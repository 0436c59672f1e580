"""Alembic environment: the engine comes from ``service.store.session.migrate``."""

from __future__ import annotations

from alembic import context

from memtune.service.store.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table="memtune_alembic_version",  # Optuna's storage has its own alembic_version
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
