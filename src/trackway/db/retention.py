"""The statements of the retention job (``core/retention.py``), each in a short transaction.

The job's one ``job_state`` row is its claim: a transaction locks it (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL: a process that finds it held skips the pass, another process is on
it; SQLite's write lock serializes the rest) and keeps the pass's cursor in it, so passes
run by several processes continue one another, and a restart continues where it stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.base import UTCDateTime
from trackway.db.models import events, job_state, sources
from trackway.db.sql import insert_ignore

JOB = "retention"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_DUE = job_state.c.next_run_at <= bindparam("now", type_=UTCDateTime())
_ROW = select(job_state).where(job_state.c.name == JOB)
#: The job's row, due or any time (the CLI), locked: ``SKIP LOCKED`` on PostgreSQL (SQLite
#: compiles no ``FOR UPDATE``: its write lock serializes the transactions).
_CLAIM_DUE = _ROW.where(_DUE).with_for_update(skip_locked=True)
_CLAIM_ANY = _ROW.with_for_update(skip_locked=True)
_RETENTION_DAYS = select(sources.c.id, sources.c.retention_days).where(sources.c.retention_days.is_not(None))
_WALK = (
    select(events.c.id, events.c.source_id, events.c.time)
    .where(events.c.time < bindparam("before", type_=UTCDateTime()))
    .order_by(events.c.time, events.c.id)
    .limit(bindparam("limit"))
)
_WALK_AFTER = _WALK.where(
    tuple_(events.c.time, events.c.id) > tuple_(bindparam("t", type_=UTCDateTime()), bindparam("i"))
)
_DELETE = delete(events).where(events.c.id.in_(bindparam("ids", expanding=True)))
_CURSOR = {"cursor_time": bindparam("c_time", type_=UTCDateTime()), "cursor_id": bindparam("c_id")}
_ADVANCE = update(job_state).where(job_state.c.name == JOB).values(_CURSOR)
_END = (
    update(job_state)
    .where(job_state.c.name == JOB)
    .values({**_CURSOR, "next_run_at": bindparam("next_run_at", type_=UTCDateTime())})
)


async def claim(db: AsyncConnection, now: datetime, *, due_only: bool = True) -> Any:
    """The job's row when a pass is due (or under way; any time unless ``due_only``), locked
    until the commit; else ``None``. The row is made on first use."""
    statement = _CLAIM_DUE if due_only else _CLAIM_ANY
    row = (await db.execute(statement, {"now": now})).first()
    if row is None and (await db.execute(_ROW)).first() is None:
        await db.execute(
            insert_ignore(db.dialect.name, job_state, ["name"]).values(name=JOB, next_run_at=EPOCH)
        )
        row = (await db.execute(statement, {"now": now})).first()
    return row


async def retention_days(db: AsyncConnection) -> dict[str, int]:
    """Sources with a retention, and its days."""
    return {row.id: int(row.retention_days) for row in await db.execute(_RETENTION_DAYS)}


async def walk(
    db: AsyncConnection, before: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[Any]:
    """The next ``limit`` events older than ``before`` in ``(time, id)`` order after the cursor
    (``ix_events_time``): a bounded read whatever the table holds."""
    if after is None:
        return list((await db.execute(_WALK, {"before": before, "limit": limit})).all())
    params = {"before": before, "limit": limit, "t": after[0], "i": after[1]}
    return list((await db.execute(_WALK_AFTER, params)).all())


async def delete_events(db: AsyncConnection, ids: list[str]) -> int:
    if not ids:
        return 0
    return int((await db.execute(_DELETE, {"ids": ids})).rowcount)


async def advance(
    db: AsyncConnection, cursor: tuple[datetime, str] | None, next_run_at: datetime | None
) -> None:
    """Keep the cursor (``None``: the pass is over, the next one is due at ``next_run_at``)."""
    params: dict[str, Any] = {"c_time": cursor[0] if cursor else None, "c_id": cursor[1] if cursor else None}
    if next_run_at is None:
        await db.execute(_ADVANCE, params)
    else:
        await db.execute(_END, {**params, "next_run_at": next_run_at})
