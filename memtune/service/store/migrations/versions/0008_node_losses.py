"""a trial's restarts after its Ray node died, apart from its failures

Revision ID: 0008_node_losses
Revises: 0007_code_tasks
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_node_losses"
down_revision = "0007_code_tasks"


def upgrade() -> None:
    with op.batch_alter_table("memtune_trials") as batch:
        batch.add_column(sa.Column("node_losses", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("memtune_trials") as batch:
        batch.drop_column("node_losses")
