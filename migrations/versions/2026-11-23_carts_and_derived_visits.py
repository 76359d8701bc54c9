"""Carts (one per profile and source) and server-derived visits (sessions.visit_key).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:07:05.762542
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: JSON on SQLite, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carts",
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("items", JSON, nullable=False),
        sa.Column("total", sa.String(length=40), nullable=False),
        sa.Column("item_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_carts_profile_id_profiles")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name=op.f("fk_carts_source_id_sources")),
        sa.PrimaryKeyConstraint("profile_id", "source_id", name=op.f("pk_carts")),
    )
    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_carts_updated_at"), ["updated_at"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visit_key", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_sessions_visit", ["source_id", "visit_key", "last_event_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_visit")
        batch_op.drop_column("visit_key")

    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_carts_updated_at"))

    op.drop_table("carts")
