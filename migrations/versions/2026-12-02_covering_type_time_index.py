"""``ix_events_type_time`` covers ``profile_id``: metrics, funnels and segments read no event row.

Every read-side question starts from the events of one type in a time range and reduces them
to people (``db/analytics.py``). With ``(type, time, id)`` each of those events was a row to
fetch from the table (on 10 M events, a 30-day metric fetched 800 k rows: seconds); with
``profile_id`` in the index they are answered from the index alone (PostgreSQL's index-only
scan, SQLite's covering index). ``profile_id`` comes last, after the unique ``id``, so the
index orders exactly as before (``GET /api/events?type=`` pages by ``time, id``); it is a key
column rather than PostgreSQL's ``INCLUDE`` so that both databases hold the same index.

The index is as wide as before plus a profile id per event; a merge that moves events to the
survivor updates their entries, as it already did in ``ix_events_profile_time``.

On PostgreSQL the new index is built ``CONCURRENTLY`` next to the old one, then swapped in,
so that a large ``events`` table keeps taking writes while it is built.

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-02 10:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _swap(columns: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_events_type_time_next")
            op.execute(f"CREATE INDEX CONCURRENTLY ix_events_type_time_next ON events ({columns})")
            op.execute("DROP INDEX CONCURRENTLY ix_events_type_time")
            op.execute("ALTER INDEX ix_events_type_time_next RENAME TO ix_events_type_time")
        return
    op.drop_index("ix_events_type_time", table_name="events")
    op.execute(f"CREATE INDEX ix_events_type_time ON events ({columns})")


def upgrade() -> None:
    _swap("type, time, id, profile_id")


def downgrade() -> None:
    _swap("type, time, id")
