"""Segments (saved conditions, evaluated when read) and the read side's indexes.

``segments`` holds a name and a condition tree (README, "The condition language"); who is
in a segment is never stored: it is the condition evaluated now.

Indexes for the read API's orders (each costs every insert or update an entry):

- ``ix_events_time`` (time, id): ``GET /api/events`` pages through all events newest first;
- ``ix_events_type_time`` (type, time, id): the same filtered by ``type=``;
- not ``profiles.last_seen_at``, though ``GET /api/people`` sorts by it: every batch of a
  returning visitor moves ``last_seen_at``, and with it indexed PostgreSQL could no longer
  update a profile in place (HOT), a cost on the hottest write for an admin list that sorts
  one row per person.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: JSON on SQLite, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("condition", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_segments"),
    )
    op.create_index("ix_events_time", "events", ["time", "id"])
    op.create_index("ix_events_type_time", "events", ["type", "time", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_type_time", table_name="events")
    op.drop_index("ix_events_time", table_name="events")
    op.drop_table("segments")
