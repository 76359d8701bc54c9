"""How data gets in: the app's ``Writer``, ``ingest_many`` for one transaction, bounded retry."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway import requestlog
from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.bots import BotPolicy
from trackway.core.group_write import GroupWrite, LostRace
from trackway.core.uow import UnitOfWork
from trackway.core.values import check_batch
from trackway.db.errors import is_retryable, is_unavailable
from trackway.errors import StorageUnavailable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
#: Races lost on a unique key before giving up: each one means another transaction committed
#: the row first, so a few concurrent groups settle in as many attempts.
MAX_RACES = 16

T = TypeVar("T")


class Writer(Protocol):
    """How a request's batches reach the database: made once in the app's lifespan.

    ``GroupCommitWriter`` (``core/group_commit.py``) shares transactions between concurrent
    requests; ``DirectWriter`` gives each request its own. Either way ``write`` returns only
    once the batches are committed, all of them or none.
    """

    async def write(self, batches: list[IngestBatch]) -> list[IngestResult]: ...

    async def close(self) -> None: ...


class DirectWriter:
    """One transaction per request (``TRACKWAY_GROUP_COMMIT=false``)."""

    def __init__(self, uow: UnitOfWork, bots: BotPolicy | None = None) -> None:
        self._uow = uow
        self._bots = bots or BotPolicy()

    async def write(self, batches: list[IngestBatch]) -> list[IngestResult]:
        if not batches:
            return []
        if (answer := self._bots.admit(batches)) is not None:
            return answer
        return noted(await ingest_many(batches, self._uow))

    async def close(self) -> None:
        """Nothing is queued: every write ran in its caller."""


async def ingest(batch: IngestBatch, uow: UnitOfWork) -> IngestResult:
    """Resolve the person and the visit, store the events, commit; only then return.

    One transaction of its own: for tests and tools. Requests go through the app's
    ``Writer`` (``services.writer``).
    """
    (result,) = await ingest_many([batch], uow)
    return result


async def ingest_many(batches: list[IngestBatch], uow: UnitOfWork) -> list[IngestResult]:
    """Ingest several batches in one transaction: all are stored, or none (Tracify's batches).

    The same write path as a group commit's (``core/group_write.py``): the batches run in the
    order of the person keys they name, and results come back in the order they came in.
    """
    for batch in batches:
        check_batch(batch)  # the core's last guard: the dialects checked their wire values first
    started = time.perf_counter()
    results = await in_transaction(uow, lambda db: GroupWrite(db, uow.dialect, batches).run())
    observe(uow, batches, results, time.perf_counter() - started)
    return results


def noted(results: list[IngestResult]) -> list[IngestResult]:
    """Tell the request log what the request's committed batches stored (in the request's task)."""
    if requestlog.current() is not None:
        requestlog.note_stored(
            sum(len(r.stored_event_ids) for r in results), sum(len(r.duplicate_event_ids) for r in results)
        )
    return results


class IngestObserver(Protocol):
    """Told about every committed transaction and the batches in it (``trackway.metrics``)."""

    def observe_commit(self, batches: int, seconds: float) -> None: ...

    def observe_ingest(self, dialect: str, stored: int, duplicates: int, merges: int) -> None: ...


def observe(uow: UnitOfWork, batches: list[IngestBatch], results: list[IngestResult], seconds: float) -> None:
    """Report a committed transaction to the unit of work's observer, if it has one."""
    observer: IngestObserver | None = getattr(uow, "observer", None)
    if observer is None:
        return
    observer.observe_commit(len(batches), seconds)
    for batch, result in zip(batches, results, strict=True):
        observer.observe_ingest(
            batch.source.dialect,
            0 if result.suppressed else len(result.stored_event_ids),
            len(result.duplicate_event_ids),
            len(result.merged),
        )


async def in_transaction(uow: UnitOfWork, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction and commit it, retrying conflicts.

    A conflict with a concurrent transaction (deadlock, serialization failure, SQLite
    busy) is retried here with jittered backoff, never by a dialect; a race lost on a
    unique key (``LostRace``: the other transaction has committed its row by then) at once.
    A database that cannot be reached is a ``StorageUnavailable``: nothing was acknowledged.
    """
    conflicts = races = 0
    while True:
        try:
            async with uow.transaction() as db:
                return await work(db)
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable() from exc
            if isinstance(exc, LostRace) and races < MAX_RACES:
                races += 1
                continue
            if is_retryable(exc) and conflicts < MAX_ATTEMPTS - 1:
                conflicts += 1
                log.info("ingest retry %d after %s", conflicts, type(getattr(exc, "orig", exc)).__name__)
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**conflicts)
                continue
            raise
