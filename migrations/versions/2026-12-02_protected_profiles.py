"""Profiles a secure source has named are protected: ``profiles.protected``.

A claim nobody verified (no valid signature, no server-side secret) never merges into,
overwrites or reveals a profile that a ``signed_only`` source has named (README, "Trust").
Every profile so far is unprotected: the flag is set from the next verified request on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: batch mode would copy ``profiles`` on SQLite, and
    # dropping the old copy fails the foreign keys of existing sessions and identities.
    op.add_column("profiles", sa.Column("protected", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("profiles", "protected")  # SQLite 3.35 and later drop a column in place
