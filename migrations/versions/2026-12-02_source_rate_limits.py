"""Per-source rate limits: ``sources.rate_limit_per_second`` and ``sources.rate_limit_burst``.

Both ``NULL`` (no limit) on every existing source. Each Trackway process keeps its own token
bucket per source (``core/ratelimit.py``): the limit is per process.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch): on SQLite a batch would copy ``sources`` and
    # dropping the old table fails its foreign keys on any database with data (see 0009).
    op.add_column("sources", sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
    op.add_column("sources", sa.Column("rate_limit_burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    # SQLite 3.35 and newer drop a column in place; these two are in no index or constraint.
    op.drop_column("sources", "rate_limit_burst")
    op.drop_column("sources", "rate_limit_per_second")
