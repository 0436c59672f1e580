"""owners and API keys; every study belongs to an owner

Revision ID: 0002_owners_and_api_keys
Revises: 0001_studies_trials_metrics

Studies created before owners existed go to the owner "local" (the open, loopback-only mode).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_owners_and_api_keys"
down_revision = "0001_studies_trials_metrics"

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    owners = op.create_table(
        "memtune_owners",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "memtune_api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("memtune_owners.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ),
    )
    with op.batch_alter_table("memtune_studies") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer, nullable=True))
        batch.create_foreign_key(
            "fk_memtune_studies_owner", "memtune_owners", ["owner_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_memtune_studies_owner_id", ["owner_id"])

    connection = op.get_bind()
    if connection.execute(sa.text("SELECT count(*) FROM memtune_studies")).scalar():
        connection.execute(owners.insert().values(name="local", created_at=sa.func.now()))
        local = connection.execute(
            sa.text("SELECT id FROM memtune_owners WHERE name = 'local'")
        ).scalar()
        connection.execute(
            sa.text("UPDATE memtune_studies SET owner_id = :owner"), {"owner": local}
        )


def downgrade() -> None:
    with op.batch_alter_table("memtune_studies") as batch:
        batch.drop_index("ix_memtune_studies_owner_id")
        batch.drop_constraint("fk_memtune_studies_owner", type_="foreignkey")
        batch.drop_column("owner_id")
    op.drop_table("memtune_api_keys")
    op.drop_table("memtune_owners")
