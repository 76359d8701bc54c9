"""Events without foreign keys: the hot table's references are kept by the ingest core.

Every event insert paid three foreign-key checks, one trigger per row and key on
PostgreSQL (each a ``SELECT ... FOR KEY SHARE`` of the profile, the session and the
source): measured with ``EXPLAIN ANALYZE`` on a 192-event group insert, 4.4 ms of
triggers next to 5.2 ms for the insert itself. Nothing here deletes what an event
points at: sources are disabled, never deleted; sessions are never deleted; a merged
profile stays as a row with ``merged_into`` set; the only profiles ever deleted are
ones the same transaction just made and left unused. The core writes an event only for
a profile it has locked (or made) and a session it has opened in the same transaction,
and the test suite checks after every test that writes (``tests/conftest.py``,
``events_reference_real_rows``) that no event points at a missing row. Citus, the
design's path past one PostgreSQL, could not have kept the session key either
(sessions would not be co-located by profile).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = (
    ("fk_events_profile_id_profiles", "profiles", "profile_id"),
    ("fk_events_session_id_sessions", "sessions", "session_id"),
    ("fk_events_source_id_sources", "sources", "source_id"),
)


def upgrade() -> None:
    # SQLite cannot drop a constraint: batch mode copies the table without them.
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name, _table, _column in FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name, table, column in FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"])
