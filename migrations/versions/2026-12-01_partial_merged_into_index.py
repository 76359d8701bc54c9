"""Index only merged profiles: ``ix_profiles_merged_into`` becomes partial (``IS NOT NULL``).

The index serves one lookup, the profiles merged into a given one (``core/merge.py``). As a
full index it also held every live profile under NULL, and PostgreSQL planned the hot
path's ``UPDATE profiles ... WHERE id = ANY(...) AND merged_into IS NULL`` on it when the
table's statistics were missing or stale (seen on a benchmark database with autovacuum
off: a bitmap scan of every live profile, filtering out 1,850 rows to lock 16). Partial,
it is smaller and cannot serve that condition, so the primary key does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGED = sa.text("merged_into IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_profiles_merged_into", table_name="profiles")
    op.create_index(
        "ix_profiles_merged_into",
        "profiles",
        ["merged_into"],
        postgresql_where=MERGED,
        sqlite_where=MERGED,
    )


def downgrade() -> None:
    op.drop_index("ix_profiles_merged_into", table_name="profiles")
    op.create_index("ix_profiles_merged_into", "profiles", ["merged_into"])
