"""a completed study's dashboard curves, kept when it completes

Revision ID: 0006_study_curves
Revises: 0005_trial_traceback
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_study_curves"
down_revision = "0005_trial_traceback"


def upgrade() -> None:
    with op.batch_alter_table("memtune_studies") as batch:
        batch.add_column(sa.Column("curves", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("memtune_studies") as batch:
        batch.drop_column("curves")
