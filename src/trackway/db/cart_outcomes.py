"""The statements of the cart outcome job (``core/cart_outcomes.py``), in its transaction.

A claim locks the due carts and their profiles without waiting for any row: on PostgreSQL
``FOR UPDATE OF c SKIP LOCKED`` (the cart) and ``FOR SHARE OF p SKIP LOCKED`` (its profile,
in the mode that conflicts with the ``FOR NO KEY UPDATE`` a writing group and a merge hold).
A cart whose profile a group is writing, or that another process's job has claimed, is
skipped and found again by a later pass; the job never waits for a lock, so it cannot
deadlock with the write path (profiles, then carts) or with another job. On SQLite the
transaction holds the one write lock (``BEGIN IMMEDIATE``): nothing else runs meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.base import JsonColumn, UTCDateTime
from trackway.db.models import carts, events, profiles
from trackway.db.rows import DueCart
from trackway.db.sql import insert_ignore

_PG_CLAIM = (
    text(
        """
        SELECT c.profile_id, c.source_id, c.items, c.total, c.lifecycle_id, c.lifecycle_started_at,
               c.outcome_due_at
        FROM carts c JOIN profiles p ON p.id = c.profile_id
        WHERE c.outcome_due_at <= :now
        ORDER BY c.outcome_due_at, c.profile_id, c.source_id
        LIMIT :limit
        FOR UPDATE OF c SKIP LOCKED
        FOR SHARE OF p SKIP LOCKED
        """
    )
    .bindparams(bindparam("now", type_=UTCDateTime()))
    .columns(
        profile_id=String,
        source_id=String,
        items=JsonColumn,
        total=String,
        lifecycle_id=String,
        lifecycle_started_at=UTCDateTime,
        outcome_due_at=UTCDateTime,
    )
)

_CLAIM = (
    select(
        carts.c.profile_id,
        carts.c.source_id,
        carts.c["items"],
        carts.c.total,
        carts.c.lifecycle_id,
        carts.c.lifecycle_started_at,
        carts.c.outcome_due_at,
    )
    .join(profiles, profiles.c.id == carts.c.profile_id)
    .where(carts.c.outcome_due_at <= bindparam("now", type_=UTCDateTime()))
    .order_by(carts.c.outcome_due_at, carts.c.profile_id, carts.c.source_id)
    .limit(bindparam("limit"))
)

#: The claimed row, locked by this transaction: matched by its key alone, so a pass always
#: empties what it claimed and cannot claim the same row again.
_CLOSE = (
    update(carts)
    .where(carts.c.profile_id == bindparam("c_profile"), carts.c.source_id == bindparam("c_source"))
    .values(
        lifecycle_id=bindparam("c_lifecycle"),
        outcome=bindparam("c_outcome"),
        outcome_at=bindparam("c_at", type_=UTCDateTime()),
        outcome_due_at=None,
    )
)


async def claim_due(db: AsyncConnection, now: datetime, limit: int) -> list[DueCart]:
    """Up to ``limit`` carts due by ``now``, soonest first, locked until the commit; carts
    another transaction holds (or whose profile it holds) are skipped."""
    statement: Any = _PG_CLAIM if db.dialect.name == "postgresql" else _CLAIM
    rows = await db.execute(statement, {"now": now, "limit": limit})
    return [
        DueCart(
            profile_id=row.profile_id,
            source_id=row.source_id,
            items=list(row._mapping["items"] or []),
            total=row.total,
            lifecycle_id=row.lifecycle_id,
            lifecycle_started_at=row.lifecycle_started_at,
            outcome_due_at=row.outcome_due_at,
        )
        for row in rows
    ]


async def insert_events(db: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Store generated events; a dedup key the source holds already is skipped. How many were new."""
    if not rows:
        return 0
    # One statement: a batch is at most a few hundred rows of ten values (SQLite allows 32,766).
    statement = insert_ignore(db.dialect.name, events, ["source_id", "dedup_key"])
    return len((await db.execute(statement.values(rows).returning(events.c.id))).all())


async def close_lifecycles(db: AsyncConnection, closed: list[tuple[str, str, str, str, datetime]]) -> None:
    """Mark each ``(profile, source, lifecycle, outcome, at)`` ended: nothing is due on it any more."""
    if not closed:
        return
    await db.execute(
        _CLOSE,
        [
            {"c_profile": p, "c_source": s, "c_lifecycle": lc, "c_outcome": outcome, "c_at": at}
            for p, s, lc, outcome, at in closed
        ],
    )
