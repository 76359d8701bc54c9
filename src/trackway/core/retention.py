"""Retention: a source's events older than its ``retention_days`` are deleted, a batch at a time.

Every process runs the job (``TRACKWAY_RETENTION_INTERVAL``); ``trackway retention run``
runs one pass. A pass walks the events older than the shortest retention in ``(time, id)``
order, ``BATCH`` index entries a transaction (``db/retention.walk``: 100 on SQLite, 1000 on
PostgreSQL), and deletes those of sources whose retention they are past. Each transaction
claims the job's row and moves its cursor (``db/retention.py``), so processes share one pass
and never do a batch twice, and each is short: a bounded read and at most ``BATCH`` deletes.
Ingest never waits on it on PostgreSQL (it locks no row a writer needs but the events it
deletes); on SQLite it holds the write lock for one such transaction, a few milliseconds.

Events only: visits and profiles stay (a profile's traits are not events); erase a person
for that (``core/erasure.py``). The walk passes over old events of sources that keep theirs
(or keep them longer): it reads them, a batch a transaction, once a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.ingest import in_transaction
from trackway.core.uow import UnitOfWork
from trackway.db import retention as store

#: Events walked (and at most deleted) in one transaction, by database: on SQLite it holds the
#: one write lock meanwhile (a hundred deletes: a few milliseconds); PostgreSQL locks nothing
#: a writer waits for.
BATCH = {"sqlite": 100, "postgresql": 1000}
#: Transactions in one pass at most: a pass is bounded; the next one goes on.
MAX_STEPS = 100_000
#: Days a source may keep its events at most when it sets a retention (ten years).
MAX_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Step:
    deleted: int
    more: bool


async def run_once(
    uow: UnitOfWork,
    *,
    interval: float,
    now: datetime | None = None,
    limit: int | None = None,
    due_only: bool = True,
) -> Step | None:
    """One batch of the pass, in one transaction; ``None`` when no pass is due (or another
    process holds the job's row right now)."""
    moment = now or datetime.now(UTC)
    size = limit or BATCH.get(uow.dialect, 100)

    async def work(db: AsyncConnection) -> Step | None:
        row = await store.claim(db, moment, due_only=due_only)
        if row is None:
            return None
        days = await store.retention_days(db)
        cursor = (row.cursor_time, row.cursor_id) if row.cursor_time is not None else None
        walked: list[Any] = []
        if days:
            before = moment - timedelta(days=min(days.values()))
            walked = await store.walk(db, before, cursor, size)
        doomed = [
            r.id
            for r in walked
            if r.source_id in days and r.time < moment - timedelta(days=days[r.source_id])
        ]
        deleted = await store.delete_events(db, doomed)
        if len(walked) < size:
            await store.advance(db, None, moment + timedelta(seconds=interval))
            return Step(deleted, more=False)
        await store.advance(db, (walked[-1].time, walked[-1].id), None)
        return Step(deleted, more=True)

    return await in_transaction(uow, work)


async def run_pass(
    uow: UnitOfWork,
    *,
    interval: float = 0,
    now: datetime | None = None,
    limit: int | None = None,
    due_only: bool = True,
) -> int:
    """Run the due pass (any time unless ``due_only``: the CLI) to its end, or until another
    process holds the job; how many events this deleted."""
    deleted = 0
    for step_number in range(MAX_STEPS):
        step = await run_once(
            uow, interval=interval, now=now, limit=limit, due_only=due_only and step_number == 0
        )
        if step is None:
            break
        deleted += step.deleted
        if not step.more:
            break
    return deleted
