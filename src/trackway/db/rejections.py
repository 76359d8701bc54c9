"""The statements of the quarantine: keep a rejected request, list and read them, claim one
for a replay and record how it went, and delete the old ones in bounded batches.

A replay is claimed by a conditional ``UPDATE`` (``quarantined`` -> ``replaying``): of two
replays of one rejection at once, in one process or two, exactly one changes the row and
runs; the other is told the rejection is taken. A claim older than ``STALE_CLAIM`` (its
process died mid-replay) may be taken again. Retention deletes claimed rows too, locked
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two processes purging at once never wait
for each other and never delete one row twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.models import rejections
from trackway.db.people import _after, _ordered, encode_cursor

QUARANTINED = "quarantined"
REPLAYING = "replaying"
REPLAYED = "replayed"
STATES = (QUARANTINED, REPLAYING, REPLAYED)
#: A replay runs one request through the app: one still ``replaying`` after this has died.
STALE_CLAIM = timedelta(minutes=5)

#: The columns of a list item: everything but the request's body, query and headers.
_SUMMARY = [
    rejections.c[name]
    for name in (
        "id",
        "received_at",
        "dialect",
        "source_id",
        "status",
        "reason",
        "response",
        "method",
        "path",
        "body_truncated",
        "state",
        "replay_attempts",
        "last_replay_at",
        "last_replay_status",
        "last_replay_response",
        "replayed_at",
    )
]


@dataclass(slots=True)
class RejectionFilter:
    source: str | None = None
    dialect: str | None = None
    reason: str | None = None
    state: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.source is not None:
            where.append(rejections.c.source_id == self.source)
        if self.dialect is not None:
            where.append(rejections.c.dialect == self.dialect)
        if self.reason is not None:
            where.append(rejections.c.reason == self.reason)
        if self.state is not None:
            where.append(rejections.c.state == self.state)
        if self.time_from is not None:
            where.append(rejections.c.received_at >= self.time_from)
        if self.time_to is not None:
            where.append(rejections.c.received_at < self.time_to)
        return where


async def insert_rejection(db: AsyncConnection, row: dict[str, Any]) -> None:
    await db.execute(insert(rejections).values(state=QUARANTINED, replay_attempts=0, **row))


async def list_page(
    db: AsyncConnection,
    wanted: RejectionFilter,
    *,
    descending: bool = True,
    limit: int = 100,
    after: tuple[datetime, str] | None = None,
) -> tuple[list[Any], str | None]:
    """A page of rejections by receive time (newest first by default), and the next cursor."""
    where = wanted.where()
    if after is not None:
        where.append(_after(rejections.c.received_at, rejections.c.id, after[0], after[1], descending))
    stmt = select(*_SUMMARY).where(*where)
    ordered = _ordered(stmt, rejections.c.received_at, rejections.c.id, descending)
    rows = (await db.execute(ordered.limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(page[-1].received_at.isoformat(), page[-1].id)
    return list(page), next_cursor


async def ids_matching(db: AsyncConnection, wanted: RejectionFilter, limit: int) -> list[str]:
    """The ids of up to ``limit`` matching rejections, oldest first (the order they were sent in)."""
    stmt = select(rejections.c.id).where(*wanted.where())
    stmt = stmt.order_by(rejections.c.received_at, rejections.c.id).limit(limit)
    return list((await db.execute(stmt)).scalars())


async def get(db: AsyncConnection, rejection_id: str) -> Any | None:
    return (await db.execute(select(rejections).where(rejections.c.id == rejection_id))).first()


async def claim(db: AsyncConnection, rejection_id: str, now: datetime) -> bool:
    """Take the rejection for one replay: it must be quarantined, or claimed by a replay that died."""
    stale = now - STALE_CLAIM
    result = await db.execute(
        update(rejections)
        .where(
            rejections.c.id == rejection_id,
            or_(
                rejections.c.state == QUARANTINED,
                and_(rejections.c.state == REPLAYING, rejections.c.claimed_at < stale),
            ),
        )
        .values(state=REPLAYING, claimed_at=now)
    )
    return bool(result.rowcount)


async def finish(
    db: AsyncConnection, rejection_id: str, *, accepted: bool, status: int, response: str, now: datetime
) -> None:
    """Record a claimed replay's answer: accepted, the rejection is ``replayed``; else back in quarantine."""
    await db.execute(
        update(rejections)
        .where(rejections.c.id == rejection_id, rejections.c.state == REPLAYING)
        .values(
            state=REPLAYED if accepted else QUARANTINED,
            claimed_at=None,
            replay_attempts=rejections.c.replay_attempts + 1,
            last_replay_at=now,
            last_replay_status=status,
            last_replay_response=response,
            replayed_at=now if accepted else None,
        )
    )


async def release(db: AsyncConnection, rejection_id: str) -> None:
    """A claimed replay that could not run (the app failed): back in quarantine, untouched."""
    await db.execute(
        update(rejections)
        .where(rejections.c.id == rejection_id, rejections.c.state == REPLAYING)
        .values(state=QUARANTINED, claimed_at=None)
    )


async def delete_older(db: AsyncConnection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` rejections received before ``before``, oldest first; how many."""
    oldest = (
        select(rejections.c.id)
        .where(rejections.c.received_at < before)
        .order_by(rejections.c.received_at, rejections.c.id)
        .limit(limit)
    )
    if db.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    ids = list((await db.execute(oldest)).scalars())
    if not ids:
        return 0
    await db.execute(delete(rejections).where(rejections.c.id.in_(ids)))
    return len(ids)
