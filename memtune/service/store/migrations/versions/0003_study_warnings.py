"""study warnings (too few seeds, no held-out data) and the search repeat of each trial

Revision ID: 0003_study_warnings
Revises: 0002_owners_and_api_keys

Studies stored before have no warnings (an empty list); their trials are repeat 0.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_study_warnings"
down_revision = "0002_owners_and_api_keys"


def upgrade() -> None:
    with op.batch_alter_table("memtune_studies") as batch:
        batch.add_column(sa.Column("warnings", sa.JSON, nullable=False, server_default="[]"))
    with op.batch_alter_table("memtune_trials") as batch:
        batch.add_column(sa.Column("repeat", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("memtune_trials") as batch:
        batch.drop_column("repeat")
    with op.batch_alter_table("memtune_studies") as batch:
        batch.drop_column("warnings")
