"""Cart outcomes: each cart lifecycle ends abandoned, canceled or purchased, once.

``carts`` gets its lifecycle: the id and start of the current (or last) one, how it ended
(``outcome``, ``NULL`` while it is open) and when, and ``outcome_due_at``: when the open
lifecycle is abandoned unless the cart changes first. That column is the due work the
background job claims (``core/cart_outcomes.py``), indexed only where it is set. Existing
carts with items get an open lifecycle that started at their last change, due an hour
(the default ``cart_abandon_after``) after it; empty ones none.

``sources.cart_abandon_after``: seconds without cart activity after which a cart with items
is abandoned (seed 004, 3.4.1 and 4.5.2), 3600 by default.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("outcome_due_at IS NOT NULL")


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN on both databases (no batch): on SQLite a batch would copy
    # ``sources`` into a new table, and dropping the old one fails its foreign keys (sessions,
    # carts) on any database with data. A string default keeps SQLite's ALTER usable.
    op.add_column(
        "sources", sa.Column("cart_abandon_after", sa.Integer(), server_default="3600", nullable=False)
    )
    op.add_column("carts", sa.Column("lifecycle_id", sa.String(length=36), nullable=True))
    op.add_column("carts", sa.Column("lifecycle_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("carts", sa.Column("outcome", sa.String(length=16), nullable=True))
    op.add_column("carts", sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("carts", sa.Column("outcome_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_carts_outcome_due_at", "carts", ["outcome_due_at"], postgresql_where=DUE, sqlite_where=DUE
    )
    _open_existing_carts()


def _open_existing_carts() -> None:
    """Carts with items get an open lifecycle from their last change; each its own id."""
    bind = op.get_bind()
    carts = sa.table(
        "carts",
        sa.column("profile_id", sa.String),
        sa.column("source_id", sa.String),
        sa.column("item_count", sa.Integer),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("lifecycle_id", sa.String),
        sa.column("lifecycle_started_at", sa.DateTime(timezone=True)),
        sa.column("outcome_due_at", sa.DateTime(timezone=True)),
    )
    if bind.dialect.name == "postgresql":
        op.execute(
            "UPDATE carts SET lifecycle_id = gen_random_uuid()::text, lifecycle_started_at = updated_at, "
            "outcome_due_at = updated_at + interval '3600 seconds' WHERE item_count > 0"
        )
        return
    import uuid
    from datetime import timedelta

    rows = bind.execute(
        sa.select(carts.c.profile_id, carts.c.source_id, carts.c.updated_at).where(carts.c.item_count > 0)
    ).all()
    for row in rows:
        bind.execute(
            carts.update()
            .where(carts.c.profile_id == row.profile_id, carts.c.source_id == row.source_id)
            .values(
                lifecycle_id=str(uuid.uuid4()),
                lifecycle_started_at=row.updated_at,
                outcome_due_at=row.updated_at + timedelta(seconds=3600),
            )
        )


def downgrade() -> None:
    # ALTER TABLE DROP COLUMN (SQLite 3.35 and later), for the same reason as above.
    op.drop_index("ix_carts_outcome_due_at", table_name="carts")
    for column in ("outcome_due_at", "outcome_at", "outcome", "lifecycle_started_at", "lifecycle_id"):
        op.drop_column("carts", column)
    op.drop_column("sources", "cart_abandon_after")
