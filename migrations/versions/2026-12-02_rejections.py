"""Quarantine: ``rejections``, the collector requests rejected with a 4xx for a known source.

Each row keeps the raw request without credentials (method, path, query, headers, the body
up to ``TRACKWAY_MAX_BODY_BYTES``), the status and JSON body the client got, and where a
replay got to. Lists go newest first (``received_at, id``), per source too; retention
deletes the oldest first through the same index.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: JSON on SQLite, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dialect", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("query", sa.LargeBinary(), nullable=False),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_truncated", sa.Boolean(), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_replay_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_replay_status", sa.Integer(), nullable=True),
        sa.Column("last_replay_response", sa.Text(), nullable=True),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejections")),
    )
    op.create_index("ix_rejections_received_at", "rejections", ["received_at", "id"])
    op.create_index("ix_rejections_source_received_at", "rejections", ["source_id", "received_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_rejections_source_received_at", table_name="rejections")
    op.drop_index("ix_rejections_received_at", table_name="rejections")
    op.drop_table("rejections")
