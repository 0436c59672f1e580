"""tasks from code: a study's files, and the scopes of an API key ("code" may submit them)

Revision ID: 0007_code_tasks
Revises: 0006_study_curves
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_code_tasks"
down_revision = "0006_study_curves"


def upgrade() -> None:
    with op.batch_alter_table("memtune_studies") as batch:
        batch.add_column(sa.Column("code", sa.LargeBinary, nullable=True))
    with op.batch_alter_table("memtune_api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("memtune_api_keys") as batch:
        batch.drop_column("scopes")
    with op.batch_alter_table("memtune_studies") as batch:
        batch.drop_column("code")
