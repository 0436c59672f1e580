"""the inventory of Ray nodes that workers see: their CPUs, GPUs and installed plugins

Revision ID: 0004_node_inventory
Revises: 0003_study_warnings
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_node_inventory"
down_revision = "0003_study_warnings"


def upgrade() -> None:
    op.create_table(
        "memtune_nodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.String(100), nullable=False, unique=True),
        sa.Column("worker_id", sa.String(100), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("cpus", sa.Float, nullable=False),
        sa.Column("gpus", sa.Float, nullable=False),
        sa.Column("tasks", sa.JSON, nullable=False),
        sa.Column("optimizers", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("memtune_nodes")
