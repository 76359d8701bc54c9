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


async def claim(db: AsyncConnection, now: datetime, *, due_only: bool = True) -> Any:
    """The job's row when a pass is due (or under way; any time unless ``due_only``), locked
    until the commit; else ``None``."""
    await db.execute(insert_ignore(db.dialect.name, job_state, ["name"]).values(name=JOB, next_run_at=EPOCH))
    statement = select(job_state).where(job_state.c.name == JOB)
    if due_only:
        statement = statement.where(job_state.c.next_run_at <= bindparam("now", type_=UTCDateTime()))
    if db.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return (await db.execute(statement, {"now": now})).first()


async def retention_days(db: AsyncConnection) -> dict[str, int]:
    """Sources with a retention, and its days."""
    rows = await db.execute(
        select(sources.c.id, sources.c.retention_days).where(sources.c.retention_days.is_not(None))
    )
    return {row.id: int(row.retention_days) for row in rows}


async def walk(
    db: AsyncConnection, before: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[Any]:
    """The next ``limit`` events older than ``before`` in ``(time, id)`` order after the cursor
    (``ix_events_time``): a bounded read whatever the table holds."""
    statement = select(events.c.id, events.c.source_id, events.c.time).where(
        events.c.time < bindparam("before", type_=UTCDateTime())
    )
    params: dict[str, Any] = {"before": before}
    if after is not None:
        statement = statement.where(
            tuple_(events.c.time, events.c.id) > tuple_(bindparam("t", type_=UTCDateTime()), bindparam("i"))
        )
        params.update(t=after[0], i=after[1])
    statement = statement.order_by(events.c.time, events.c.id).limit(limit)
    return list((await db.execute(statement, params)).all())


async def delete_events(db: AsyncConnection, ids: list[str]) -> int:
    if not ids:
        return 0
    return int((await db.execute(delete(events).where(events.c.id.in_(ids)))).rowcount)


async def advance(
    db: AsyncConnection, cursor: tuple[datetime, str] | None, next_run_at: datetime | None
) -> None:
    """Keep the cursor (``None``: the pass is over, the next one is due at ``next_run_at``)."""
    values: dict[str, Any] = {
        "cursor_time": cursor[0] if cursor else None,
        "cursor_id": cursor[1] if cursor else None,
    }
    if next_run_at is not None:
        values["next_run_at"] = next_run_at
    await db.execute(update(job_state).where(job_state.c.name == JOB).values(values))
