"""The traffic overview's queries: events counted per minute, per hour and per source.

Counted by the event's ``time`` on the ``(time, id)`` index (migration 0007), so a window of
the last hour or day reads only that window's index range, whatever the table's size. The
buckets are computed in SQL (no event is loaded into Python): whole minutes or hours since
the window's start, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.analytics import _epoch, _t
from trackway.db.models import events, sources


async def buckets(
    db: AsyncConnection, dialect: str, start: datetime, end: datetime, width_seconds: int
) -> list[dict[str, Any]]:
    """Events with ``start <= time < end`` counted per ``width_seconds`` bucket and source:
    ``[{"bucket": n, "source_id", "count"}]``, ``n`` counted from 0 at ``start``."""
    offset = (_epoch(events.c.time, dialect) - start.timestamp()) / width_seconds
    index = cast(offset, Integer) if dialect == "sqlite" else cast(func.floor(offset), Integer)
    bucket = index.label("bucket")
    stmt = (
        select(bucket, events.c.source_id, func.count().label("count"))
        .where(events.c.time >= _t(start), events.c.time < _t(end))
        .group_by(bucket, events.c.source_id)
    )
    rows = (await db.execute(stmt)).all()
    return [{"bucket": int(row.bucket), "source_id": row.source_id, "count": int(row.count)} for row in rows]


async def per_source(db: AsyncConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Events with ``start <= time < end`` per source id."""
    stmt = (
        select(events.c.source_id, func.count().label("count"))
        .where(events.c.time >= _t(start), events.c.time < _t(end))
        .group_by(events.c.source_id)
    )
    return {row.source_id: int(row.count) for row in (await db.execute(stmt)).all()}


async def source_dialects(db: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Every source's name, dialect and whether it is on, by id (a small table)."""
    rows = (
        await db.execute(select(sources.c.id, sources.c.name, sources.c.dialect, sources.c.enabled))
    ).all()
    return {row.id: {"name": row.name, "dialect": row.dialect, "enabled": row.enabled} for row in rows}
