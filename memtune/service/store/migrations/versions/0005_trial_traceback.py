"""a failed trial's full traceback, readable by its owner

Revision ID: 0005_trial_traceback
Revises: 0004_node_inventory
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_trial_traceback"
down_revision = "0004_node_inventory"


def upgrade() -> None:
    with op.batch_alter_table("memtune_trials") as batch:
        batch.add_column(sa.Column("traceback", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("memtune_trials") as batch:
        batch.drop_column("traceback")
