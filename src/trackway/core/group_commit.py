"""Group commit: many requests' batches written in one transaction, each request awaiting its commit.

One transaction per request spends most of its time on round trips and on the commit's
flush to disk. Here requests hand their ``IngestBatch`` to a writer; the writer takes
whatever has queued up (up to ``max_batches``, after waiting ``window`` seconds for more),
writes it in one transaction and commits once; only then does each request get its
result and answer 2xx. Nothing is acknowledged before it is committed.

Every group is written by the one write path, ``core/group_write.py``, in one transaction:
a few statements a step whatever the group's size and its mix of dialects.

If a transaction fails, each of its batches is written again on its own, so one bad
batch does not sink its neighbours; a database that cannot be reached fails them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.bots import BotPolicy
from trackway.core.group_write import GroupWrite
from trackway.core.ingest import in_transaction, ingest_many, noted, observe
from trackway.core.uow import UnitOfWork
from trackway.core.values import check_batch
from trackway.errors import StorageUnavailable

log = logging.getLogger(__name__)

#: A queued request: its batches (written atomically: all or none) and the future its handler
#: awaits, settled with their results in the same order.
Pending = tuple[list[IngestBatch], "asyncio.Future[list[IngestResult]]"]
#: A person or visit a request names: ``("profile", id)``, ``("visit", source, key)``,
#: ``("identity", scope, kind, value)``.
RowKey = tuple[str, ...]


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
        bots: BotPolicy | None = None,
    ) -> None:
        self._uow = uow
        self._bots = bots or BotPolicy()
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

    async def write(self, batches: list[IngestBatch]) -> list[IngestResult]:
        """Queue one request's batches; return once the group holding them is committed.

        The batches of one request (a Tracify batch: one per event) always share one
        transaction: all of them are stored, or none.
        """
        if not batches:
            return []
        if (answer := self._bots.admit(batches)) is not None:
            return answer
        for batch in batches:
            check_batch(batch)  # refused before it joins a group: a 422, not a failed group
        if self._closing or self._task is None or self._task.done():
            raise StorageUnavailable("Shutting down, retry later.")
        future: asyncio.Future[list[IngestResult]] = asyncio.get_running_loop().create_future()
        self._queue.append((batches, future))
        self._wakeup.set()
        return noted(await future)

    async def submit(self, batch: IngestBatch) -> IngestResult:
        """``write`` for a request of one batch."""
        (result,) = await self.write([batch])
        return result

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
        """The group in one transaction, each request answered after its commit. A failed
        transaction is written again one request at a time, so one bad request does not
        sink its neighbours."""
        batches = [batch for unit, _ in group for batch in unit]
        started = time.perf_counter()
        try:
            results = await in_transaction(self._uow, lambda db: write_group(db, self._uow.dialect, batches))
        except StorageUnavailable as exc:
            for _, future in group:
                _settle(future, exc=exc)
            return
        except Exception as exc:
            if len(group) > 1:
                # Class names only: a database error's text may quote the values it was given.
                log.warning(
                    "group of %d requests failed (%s); writing them one by one", len(group), _kind(exc)
                )
            await self._one_by_one(group)
            return
        self.groups += 1
        self.batches += len(batches)
        observe(self._uow, batches, results, time.perf_counter() - started)
        position = 0
        for unit, future in group:
            _settle(future, result=results[position : position + len(unit)])
            position += len(unit)

    async def _one_by_one(self, group: list[Pending]) -> None:
        for batches, future in group:
            try:
                results = await ingest_many(batches, self._uow)
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, result=results)


def _kind(exc: BaseException) -> str:
    """An exception's class names, outermost first: enough to tell a cause, never a value."""
    names = [type(exc).__name__]
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        names.append(type(cause).__name__)
    return " from ".join(names)


def _settle(
    future: asyncio.Future[list[IngestResult]],
    *,
    result: list[IngestResult] | None = None,
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


def row_keys(batches: list[IngestBatch]) -> frozenset[RowKey]:
    """The people and visits a request names, as far as it tells before it is written."""
    keys: list[RowKey] = []
    for batch in batches:
        if batch.profile_hint is not None:
            keys.append(("profile", batch.profile_hint))
        if batch.session_key is not None:
            keys.append(("visit", batch.source.id, batch.session_key))
        for ref in batch.identities:
            keys.append(("identity", ref.scope, ref.kind, ref.value))
    return frozenset(keys)


async def write_group(db: AsyncConnection, dialect: str, batches: list[IngestBatch]) -> list[IngestResult]:
    """A group's batches through the write path in the open transaction."""
    return await GroupWrite(db, dialect, batches).run()
