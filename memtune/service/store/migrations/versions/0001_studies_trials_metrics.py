"""studies, arms, trials and per-epoch metrics

Revision ID: 0001_studies_trials_metrics
Revises:
"""

import sqlalchemy as sa
from alembic import op

from memtune.service.store.types import FloatSafeJSON

revision = "0001_studies_trials_metrics"
down_revision = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "memtune_studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(100), nullable=False, index=True),
        sa.Column("spec", FloatSafeJSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("total_trials", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("verdict", FloatSafeJSON),
        sa.Column("worker_id", sa.String(100)),
        sa.Column("lease_expires_at", TZ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False, index=True),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
    )
    op.create_table(
        "memtune_arms",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("memtune_studies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("optimizer", sa.String(100), nullable=False, index=True),
        sa.Column("baseline", sa.Boolean, nullable=False),
        sa.UniqueConstraint("study_id", "label"),
    )
    op.create_table(
        "memtune_trials",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("memtune_studies.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("arm", sa.String(200), nullable=False),
        sa.Column("tune_trial_id", sa.String(100), nullable=False),
        sa.Column("phase", sa.String(10), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("config", FloatSafeJSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("epochs_done", sa.Integer, nullable=False),
        sa.Column("best_metric", sa.Float),
        sa.Column("final_metric", sa.Float),
        sa.Column("summary", FloatSafeJSON),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("study_id", "tune_trial_id"),
    )
    op.create_table(
        "memtune_metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "trial_id",
            sa.Integer,
            sa.ForeignKey("memtune_trials.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("values", FloatSafeJSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("trial_id", "epoch", "attempt"),
    )
    op.create_index("ix_memtune_metrics_trial", "memtune_metrics", ["trial_id"])


def downgrade() -> None:
    for table in ("memtune_metrics", "memtune_trials", "memtune_arms", "memtune_studies"):
        op.drop_table(table)
