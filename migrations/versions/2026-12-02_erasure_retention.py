"""Erasure, suppression and retention (issue 17).

``erasures``: requests to forget a person, claimed by the erasure job, and afterwards their
audit rows (nothing personal: hashes and counts). ``suppressions``: an erased person's keys,
as hashes, that later requests are matched against. ``job_state``: a background job's claim
and progress shared by every process (the retention job). ``sources.retention_days``: how
long a source's events are kept (``NULL``: for ever, the default).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OPEN = sa.text("state <> 'done'")


def upgrade() -> None:
    # Plain ADD COLUMN (no batch): a batch copies ``sources`` on SQLite and fails its foreign keys.
    op.add_column("sources", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("suppress", sa.Boolean(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("target_profile_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("key_hashes", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index(
        "ix_erasures_open", "erasures", ["requested_at"], postgresql_where=OPEN, sqlite_where=OPEN
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("erasure_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_suppressions_key_hash")),
    )
    op.create_table(
        "job_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cursor_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_id", sa.String(length=36), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_state")),
    )


def downgrade() -> None:
    op.drop_table("job_state")
    op.drop_table("suppressions")
    op.drop_index("ix_erasures_open", table_name="erasures")
    op.drop_table("erasures")
    op.drop_column("sources", "retention_days")
