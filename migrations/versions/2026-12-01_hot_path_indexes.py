"""Indexes the write path pays for and no query uses: ``ix_events_session_id`` goes, and
``ix_sessions_visit`` keys on ``started_at`` instead of ``last_event_at``.

No query reads events by session (the read API reads them by profile and time, merges
move them by profile), yet every event insert paid an entry in that index. And every
request that continues a visit moves its ``last_event_at``: with that column in an
index, PostgreSQL could never update the session in place (a HOT update) and wrote an
entry in each of its four indexes every time. The derived-visit lookup it served (the
latest visit of a person's key) finds the same row by ``started_at``, which never changes:
the visits of one key follow each other.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_session_id", table_name="events")
    op.drop_index("ix_sessions_visit", table_name="sessions")
    op.create_index("ix_sessions_visit", "sessions", ["source_id", "visit_key", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_visit", table_name="sessions")
    op.create_index("ix_sessions_visit", "sessions", ["source_id", "visit_key", "last_event_at"])
    op.create_index("ix_events_session_id", "events", ["session_id"])
