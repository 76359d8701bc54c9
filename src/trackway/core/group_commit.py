"""Group commit: many requests' batches written in one transaction, each request awaiting its commit.

One transaction per request spends most of its time on round trips and on the commit's
flush to disk. Here requests hand their ``IngestBatch`` to a writer; the writer takes
whatever has queued up (up to ``max_batches``, after waiting ``window`` seconds for more),
writes it in one transaction and commits once; only then does each request get its
result and answer 2xx. Nothing is acknowledged before it is committed.

The common batches, a known profile sending events in its visit (Tracardi's returning
visitor), a new visit of a known profile and a brand-new visitor, take the bulk path of
``core/bulk.py``: a few statements for the whole group, in one transaction. Every other
batch (identities, merges, traits, carts, derived visits) and those the bulk path hands
back (a lost profile recovered through its session, a new visitor whose session another
group opened first) then run the per-batch steps of ``core/ingest.py`` in a second
transaction, in the order of the people they name. A merge in the group therefore sees,
and moves, the events the bulk part committed. Two transactions, not one: the bulk part
ends holding row locks taken in id order, and per-batch steps that waited on other rows
while holding them deadlocked against other groups (seen under the benchmark's load).

If a transaction fails, each of its batches is written again on its own, so one bad
batch does not sink its neighbours; a database that cannot be reached fails them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.bulk import BulkStore, BulkWriter, is_bulk
from trackway.core.ingest import in_transaction, ingest_many, observe, run_in_person_order
from trackway.core.uow import UnitOfWork
from trackway.db.bulk_pg import PgBulkStore
from trackway.db.bulk_sqlite import SqliteBulkStore
from trackway.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: A queued request: its batch and the future its handler awaits.
Pending = tuple[IngestBatch, "asyncio.Future[IngestResult]"]
#: A profile or visit a plain batch writes: ``("profile", id)``, ``("visit", source, key)``.
RowKey = tuple[str, ...]
#: Writes a part of a group in an open transaction (``write_bulk`` or ``write_rest``).
GroupWrite = Callable[[AsyncConnection, str, list[IngestBatch]], Awaitable[list[IngestResult | None]]]


class GroupCommitWriter:
    """Queues batches and writes them in groups, one or two transactions each (``_write``).

    While one group waits on the database the next one gathers and may start, up to
    ``in_flight`` groups at once on PostgreSQL (their profile locks are all taken in id
    order, so they queue behind each other rather than deadlock).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        window: float = 0.002,
        max_batches: int = 32,
        in_flight: int = 4,
    ) -> None:
        self._uow = uow
        self._window = window
        self._max = max_batches
        # SQLite has one writer: a second group would only queue on its lock.
        self._slots = asyncio.Semaphore(1 if uow.dialect == "sqlite" else in_flight)
        self._writing: set[asyncio.Task[None]] = set()
        self._queue: list[Pending] = []
        #: Rows (profiles, visits) of the plain batches in the groups in flight, and how many.
        self._busy: Counter[RowKey] = Counter()
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
            self._wakeup.clear()
            while self._queue:
                await self._slots.acquire()  # at most `in_flight` groups wait on the database at once
                if self._window > 0 and len(self._queue) < self._max and not self._closing:
                    await asyncio.sleep(self._window)  # let the requests arriving meanwhile join
                group, keys = self._take_group()
                if not group:
                    self._slots.release()
                    break  # every queued batch waits for a group in flight; its end wakes us
                self._busy.update(keys)
                task = asyncio.create_task(self._write_and_release(group, keys))
                self._writing.add(task)
            if self._closing and not self._queue and not self._writing:
                return

    def _take_group(self) -> tuple[list[Pending], set[RowKey]]:
        """The next group: queued batches in order, up to ``max_batches``, leaving for a later
        group those whose profile or visit a group in flight is writing.

        Two groups in flight that share a returning visitor's rows would queue on their row
        locks anyway, the second group as a whole waiting for the first one's commit; left
        in the queue, only that visitor's batch waits. This is scheduling, not correctness:
        other processes' groups still queue on the locks, which decide.
        """
        group: list[Pending] = []
        keys: set[RowKey] = set()
        kept: list[Pending] = []
        for pending in self._queue:
            batch_keys = row_keys(pending[0])
            if len(group) >= self._max or not self._busy.keys().isdisjoint(batch_keys):
                kept.append(pending)
                continue
            group.append(pending)
            keys.update(batch_keys)
        self._queue = kept
        return group, keys

    async def _write_and_release(self, group: list[Pending], keys: set[RowKey]) -> None:
        try:
            await self._write(group)
        except Exception:  # never let the writer die: every future is settled in _write
            log.exception("group commit writer error")
        finally:
            self._busy.subtract(keys)
            for key in keys:
                if self._busy[key] <= 0:
                    del self._busy[key]
            self._writing.discard(asyncio.current_task())  # type: ignore[arg-type]
            self._slots.release()
            self._wakeup.set()  # batches left for this group's end, or close() waiting

    async def _write(self, group: list[Pending]) -> None:
        """The group's plain batches in one transaction, then the others (and those the bulk
        path handed back) in a second one, each request answered after its own commit."""
        plain: list[Pending] = []
        rest: list[Pending] = []
        for pending in group:
            (plain if is_bulk(pending[0]) else rest).append(pending)
        if plain:
            rest.extend(await self._commit(plain, write_bulk))
        if rest:
            await self._commit(rest, write_rest)

    async def _commit(self, part: list[Pending], write: GroupWrite) -> list[Pending]:
        """Write ``part`` in one transaction and answer its requests; those ``write`` left
        (``None``) are returned unanswered. A failed transaction is written again one batch
        at a time, so one bad batch does not sink its neighbours."""
        batches = [batch for batch, _ in part]
        started = time.perf_counter()
        try:
            results = await in_transaction(self._uow, lambda db: write(db, self._uow.dialect, batches))
        except StorageUnavailable as exc:
            for _, future in part:
                _settle(future, exc=exc)
            return []
        except Exception:
            if len(part) > 1:
                log.warning("group of %d failed; writing its batches one by one", len(part), exc_info=True)
            await self._one_by_one(part)
            return []
        outcomes = list(zip(part, results, strict=True))
        done = [(pending, result) for pending, result in outcomes if result is not None]
        if done:  # a transaction whose every batch was handed back wrote nothing
            self.groups += 1
            self.batches += len(done)
            observe(
                self._uow,
                [batch for (batch, _), _ in done],
                [result for _, result in done],
                time.perf_counter() - started,
            )
        for (_, future), result in done:
            _settle(future, result=result)
        return [pending for pending, result in outcomes if result is None]

    async def _one_by_one(self, group: list[Pending]) -> None:
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


def row_keys(batch: IngestBatch) -> frozenset[RowKey]:
    """The rows a plain batch will lock; none for the others (their people are not known yet)."""
    if not is_bulk(batch):
        return frozenset()
    keys: list[RowKey] = []
    if batch.profile_hint is not None:
        keys.append(("profile", batch.profile_hint))
    if batch.session_key is not None:
        keys.append(("visit", batch.source.id, batch.session_key))
    return frozenset(keys)


async def write_bulk(
    db: AsyncConnection, dialect: str, batches: list[IngestBatch]
) -> list[IngestResult | None]:
    """Plain batches through the bulk path in the open transaction; ``None``: handed back."""
    store: BulkStore = PgBulkStore(db) if dialect == "postgresql" else SqliteBulkStore(db)
    return await BulkWriter(store, batches).run()


async def write_rest(
    db: AsyncConnection, dialect: str, batches: list[IngestBatch]
) -> list[IngestResult | None]:
    """Every other batch through the per-batch steps, in the order of the people they name."""
    return list(await run_in_person_order(db, dialect, batches))
