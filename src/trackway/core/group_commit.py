"""Group commit: many requests' batches written in one transaction, each request awaiting its commit.

One transaction per request spends most of its time on round trips and on the commit's
flush to disk. Here requests hand their ``IngestBatch`` to a writer; the writer takes
whatever has queued up (up to ``max_batches``, after waiting ``window`` seconds for more),
writes it in one transaction and commits once; only then does each request get its
result and answer 2xx. Nothing is acknowledged before it is committed.

The common batches, a known profile sending events in its visit (Tracardi's returning
visitor), a new visit of a known profile and a brand-new visitor, take the bulk path of
``core/bulk.py``: a few statements for the whole group. Every other batch (identities,
merges, traits, carts, derived visits, a lost profile recovered through its session) runs
the ordinary per-batch steps of ``core/ingest.py`` in the same transaction, after the bulk
part: a merge in the group therefore sees, and moves, the events the bulk part stored.

If the group's transaction fails, each batch is written again on its own, so one bad
batch does not sink its neighbours; a database that cannot be reached fails them all.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.bulk import BulkStore, BulkWriter, is_bulk
from trackway.core.ingest import _Run, in_transaction, ingest_many, observe
from trackway.core.uow import UnitOfWork
from trackway.db.bulk_core import CoreBulkStore
from trackway.db.bulk_pg import PgBulkStore
from trackway.errors import StorageUnavailable

log = logging.getLogger(__name__)


class GroupCommitWriter:
    """Queues batches and writes them in groups, one transaction each.

    While one group waits on the database the next one gathers and may start, up to
    ``in_flight`` groups at once on PostgreSQL (their profile locks are all taken in id
    order, so they queue behind each other rather than deadlock).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        window: float = 0.002,
        max_batches: int = 128,
        in_flight: int = 2,
    ) -> None:
        self._uow = uow
        self._window = window
        self._max = max_batches
        # SQLite has one writer: a second group would only queue on its lock.
        self._slots = asyncio.Semaphore(1 if uow.dialect == "sqlite" else in_flight)
        self._writing: set[asyncio.Task[None]] = set()
        self._queue: list[tuple[IngestBatch, asyncio.Future[IngestResult]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Committed groups and the batches in them (for tests and the benchmark's notes).
        self.groups = 0
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="trackway-group-commit")

    async def submit(self, batch: IngestBatch) -> IngestResult:
        """Queue ``batch``; return once the group holding it is committed."""
        if self._closing or self._task is None or self._task.done():
            raise StorageUnavailable("Shutting down, retry later.")
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop taking batches and write every queued one before returning (graceful shutdown)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:
                if self._closing:
                    if self._writing:
                        await asyncio.gather(*self._writing)
                    return
                self._wakeup.clear()
                continue
            await self._slots.acquire()  # at most `in_flight` groups wait on the database at once
            if self._window > 0 and len(self._queue) < self._max and not self._closing:
                await asyncio.sleep(self._window)  # let the requests arriving meanwhile join
            group, self._queue = self._queue[: self._max], self._queue[self._max :]
            task = asyncio.create_task(self._write_and_release(group))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def _write_and_release(self, group: list[tuple[IngestBatch, asyncio.Future[IngestResult]]]) -> None:
        try:
            await self._write(group)
        except Exception:  # never let the writer die: every future is settled in _write
            log.exception("group commit writer error")
        finally:
            self._slots.release()

    async def _write(self, group: list[tuple[IngestBatch, asyncio.Future[IngestResult]]]) -> None:
        batches = [batch for batch, _ in group]
        started = time.perf_counter()
        try:
            results = await in_transaction(self._uow, lambda db: write_group(db, self._uow.dialect, batches))
        except StorageUnavailable as exc:
            for _, future in group:
                _settle(future, exc=exc)
            return
        except Exception:
            if len(group) > 1:
                log.warning("group of %d failed; writing its batches one by one", len(group), exc_info=True)
            await self._one_by_one(group)
            return
        self.groups += 1
        self.batches += len(group)
        observe(self._uow, batches, results, time.perf_counter() - started)
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result=result)

    async def _one_by_one(self, group: list[tuple[IngestBatch, asyncio.Future[IngestResult]]]) -> None:
        for batch, future in group:
            try:
                (result,) = await ingest_many([batch], self._uow)
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, result=result)


def _settle(
    future: asyncio.Future[IngestResult],
    *,
    result: IngestResult | None = None,
    exc: BaseException | None = None,
) -> None:
    """A request that went away (client disconnect) left a cancelled future: nothing to tell."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)


async def write_group(db: AsyncConnection, dialect: str, batches: list[IngestBatch]) -> list[IngestResult]:
    """Write the batches in the open transaction: the bulk path first, then the rest one by one."""
    results: list[IngestResult | None] = [None] * len(batches)
    bulk = [i for i, batch in enumerate(batches) if is_bulk(batch)]
    if bulk:
        store: BulkStore = PgBulkStore(db) if dialect == "postgresql" else CoreBulkStore(db)
        done = await BulkWriter(store, [batches[i] for i in bulk]).run()
        for i, result in zip(bulk, done, strict=True):
            results[i] = result
    for i, batch in enumerate(batches):
        if results[i] is None:
            results[i] = await _Run(db, dialect, batch).run()
    return [result for result in results if result is not None]
