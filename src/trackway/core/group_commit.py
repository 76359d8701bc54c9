"""Group commit: many requests' batches written in one transaction, each request awaiting its commit.

One transaction per request spends most of its time on round trips and on the commit's
flush to disk. Here requests hand their ``IngestBatch`` to a writer; the writer takes
whatever has queued up (up to ``max_batches``, after waiting ``window`` seconds for more),
writes it in one transaction and commits once; only then does each request get its
result and answer 2xx. Nothing is acknowledged before it is committed.

The common batches, a known profile sending events in its visit (Tracardi's returning
visitor) and a brand-new visitor with only a session id, take a bulk path: one ``UPDATE``
locks and touches every known profile, one ``SELECT`` finds the known sessions, one
``INSERT`` makes the new visitors' profiles, at most one ``INSERT`` and two ``UPDATE`` statements
settle the visits, and one ``INSERT`` stores every event of the group. Every other batch
(identities, merges, traits, carts, derived visits, a lost profile recovered through its
session) runs the ordinary per-batch steps of ``core/ingest.py`` in the same transaction,
after the bulk part: a merge in the group therefore sees, and moves, the events the bulk
part stored.

If the group's transaction fails, each batch is written again on its own, so one bad
batch does not sink its neighbours; a database that cannot be reached fails them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway import jsonutil
from trackway.core import events as event_store
from trackway.core import sessions as session_store
from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.ingest import _Run, in_transaction, ingest_many, observe
from trackway.core.uow import UnitOfWork
from trackway.db.models import events, profiles, sessions
from trackway.db.sql import PG_INSERT_EVENTS, greatest, in_ids, insert_ignore
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


def is_bulk(batch: IngestBatch) -> bool:
    """Nothing to resolve but a profile id and a client session: no identities, merges,
    traits, cart or derived visit. Tracardi's returning visitors, new visits of known
    profiles and brand-new visitors all are."""
    return (
        not batch.identities
        and not batch.merges
        and not batch.traits
        and not batch.unlink
        and batch.cart is None
        and batch.visit_key is None
        and batch.identified is None
        and (batch.profile_hint is not None or _has_visit(batch))
    )


async def write_group(db: AsyncConnection, dialect: str, batches: list[IngestBatch]) -> list[IngestResult]:
    """Write the batches in the open transaction: the bulk path first, then the rest one by one."""
    results: list[IngestResult | None] = [None] * len(batches)
    bulk = [i for i, batch in enumerate(batches) if is_bulk(batch)]
    if bulk:
        done = await _Bulk(db, dialect, [batches[i] for i in bulk]).run()
        for i, result in zip(bulk, done, strict=True):
            results[i] = result
    for i, batch in enumerate(batches):
        if results[i] is None:
            results[i] = await _Run(db, dialect, batch).run()
    return [result for result in results if result is not None]


@dataclass
class _Visit:
    """One client session touched by the group's bulk part."""

    id: str
    source_id: str
    client_key: str
    profile_id: str
    first: IngestBatch
    expected: int = 0
    created: bool = False


class _Bulk:
    """The bulk path for a group's plain batches; returns ``None`` for those it leaves.

    A batch is resolved here when its profile id names a live profile, or when it names
    no live profile and its session is unknown: a new visitor, who gets a new profile
    (seed 001: an unknown profile id gets a new one). Batches of one new session share
    that profile. A batch whose session already exists but whose profile is unknown
    (lost-profile recovery) or merged is left to the per-batch steps.
    """

    def __init__(self, db: AsyncConnection, dialect: str, batches: list[IngestBatch]) -> None:
        self.db = db
        self.dialect = dialect
        self.batches = batches
        self.now: datetime = max(batch.meta.received_at for batch in batches)
        #: The profile each batch lands on; ``None``: left to the per-batch steps.
        self.profile_of: list[str | None] = [None] * len(batches)
        #: Profiles this group created, and the batch that created each.
        self.fresh: dict[str, int] = {}

    async def run(self) -> list[IngestResult | None]:
        live = await self._lock_profiles()
        self.profile_of = [
            batch.profile_hint if batch.profile_hint in live else None for batch in self.batches
        ]
        existing = await self._existing_sessions()
        await self._create_profiles(existing)
        visits = await self._visits(existing)
        stored_by_batch = await self._store_events(visits)
        await self._settle_counts(visits, stored_by_batch)
        results: list[IngestResult | None] = []
        for index, batch in enumerate(self.batches):
            profile_id = self.profile_of[index]
            if profile_id is None:
                results.append(None)  # merged, unknown with a known session: the per-batch steps
                continue
            visit = visits.get(_visit_id(batch)) if _has_visit(batch) else None
            stored, duplicates = stored_by_batch[index]
            results.append(
                IngestResult(
                    profile_id=profile_id,
                    session_id=visit.id if visit else None,
                    stored_event_ids=stored,
                    duplicate_event_ids=duplicates,
                    profile_created=self.fresh.get(profile_id) == index,
                    session_created=bool(visit and visit.created and visit.first is batch),
                    resolved_by="new" if profile_id in self.fresh else "hint",
                )
            )
        return results

    async def _lock_profiles(self) -> set[str]:
        """Lock and mark seen every live hinted profile, in id order (the merges' lock order)."""
        ids = sorted({batch.profile_hint for batch in self.batches if batch.profile_hint is not None})
        if not ids:
            return set()
        rows = await self.db.execute(
            update(profiles)
            .where(in_ids(self.dialect, profiles.c.id, ids), profiles.c.merged_into.is_(None))
            .values(last_seen_at=greatest(profiles.c.last_seen_at, self.now))
            .returning(profiles.c.id)
        )
        return set(rows.scalars())

    async def _existing_sessions(self) -> set[str]:
        ids = sorted({_visit_id(batch) for batch in self.batches if _has_visit(batch)})
        if not ids:
            return set()
        rows = await self.db.execute(select(sessions.c.id).where(in_ids(self.dialect, sessions.c.id, ids)))
        return set(rows.scalars())

    async def _create_profiles(self, existing: set[str]) -> None:
        """A new profile for each new session that no live profile of the group opens."""
        claimed = {
            _visit_id(batch)
            for batch, profile_id in zip(self.batches, self.profile_of, strict=True)
            if profile_id is not None and _has_visit(batch)
        }
        new_for: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        for index, batch in enumerate(self.batches):
            if self.profile_of[index] is not None or not _has_visit(batch):
                continue
            visit_id = _visit_id(batch)
            if visit_id in existing or visit_id in claimed:
                continue  # its session names the profile: the per-batch steps find it
            profile_id = new_for.get(visit_id)
            if profile_id is None:
                profile_id = new_for[visit_id] = str(uuid.uuid4())
                self.fresh[profile_id] = index
                at = batch.meta.received_at
                rows.append(
                    {
                        "id": profile_id,
                        "traits": {},
                        "anonymous": True,
                        "visits": 0,
                        "created_at": at,
                        "updated_at": at,
                        "last_seen_at": at,
                    }
                )
            self.profile_of[index] = profile_id
        if rows:
            await self.db.execute(insert(profiles), rows)

    async def _visits(self, existing: set[str]) -> dict[str, _Visit]:
        """Continue the known sessions and open the new ones, one statement each."""
        visits: dict[str, _Visit] = {}
        for batch, profile_id in zip(self.batches, self.profile_of, strict=True):
            if profile_id is None or not _has_visit(batch):
                continue
            visit_id = _visit_id(batch)
            visit = visits.get(visit_id)
            if visit is None:
                visit = visits[visit_id] = _Visit(
                    id=visit_id,
                    source_id=batch.source.id,
                    client_key=str(batch.session_key),
                    profile_id=profile_id,
                    first=batch,
                )
            visit.expected += event_store.expected_count(batch.events)
        if not visits:
            return visits
        # Sorted: two groups opening the same sessions wait on each other in one order.
        new = sorted((v for v in visits.values() if v.id not in existing), key=lambda v: v.id)
        if new:
            rows = [
                {
                    "id": visit.id,
                    "source_id": visit.source_id,
                    "client_key": visit.client_key,
                    "visit_key": None,
                    "profile_id": visit.profile_id,
                    "started_at": visit.first.meta.received_at,
                    "last_event_at": self.now,
                    "event_count": visit.expected,
                    "context": session_store.context_for(visit.first),
                }
                for visit in new
            ]
            stmt = insert_ignore(self.dialect, sessions, ["source_id", "client_key"]).returning(sessions.c.id)
            created = set((await self.db.execute(stmt, rows)).scalars())
            for visit in new:
                visit.created = visit.id in created
            await self._count_visits([visit.profile_id for visit in new if visit.created])
            await self._drop_lost([visit for visit in new if not visit.created], visits)
        touched = [visit for visit in visits.values() if not visit.created]
        await self._touch(touched, {visit.id: visit.expected for visit in touched})
        return visits

    async def _drop_lost(self, lost: list[_Visit], visits: dict[str, _Visit]) -> None:
        """A concurrent group opened these sessions first: a profile made for one is unused.

        Its batches go to the per-batch steps, which find the session's owner.
        """
        unused = [visit.profile_id for visit in lost if visit.profile_id in self.fresh]
        if not unused:
            return
        for visit in lost:
            if visit.profile_id in self.fresh:
                del visits[visit.id]
        gone = set(unused)
        self.profile_of = [None if p in gone else p for p in self.profile_of]
        for profile_id in unused:
            del self.fresh[profile_id]
        await self.db.execute(delete(profiles).where(in_ids(self.dialect, profiles.c.id, unused)))

    async def _count_visits(self, profile_ids: list[str]) -> None:
        if not profile_ids:
            return
        per_profile: dict[str, int] = defaultdict(int)
        for profile_id in profile_ids:
            per_profile[profile_id] += 1
        await self.db.execute(
            update(profiles)
            .where(profiles.c.id == bindparam("pid"))
            .values(visits=profiles.c.visits + bindparam("n")),
            [{"pid": pid, "n": n} for pid, n in sorted(per_profile.items())],
        )

    async def _touch(self, visits: list[_Visit], counts: dict[str, int]) -> None:
        rows = [{"sid": v.id, "n": counts[v.id], "at": self.now} for v in sorted(visits, key=lambda v: v.id)]
        if not rows:
            return
        await self.db.execute(
            update(sessions)
            .where(sessions.c.id == bindparam("sid"))
            .values(
                last_event_at=greatest(
                    sessions.c.last_event_at, bindparam("at", type_=sessions.c.last_event_at.type)
                ),
                event_count=sessions.c.event_count + bindparam("n"),
            ),
            rows,
        )

    async def _store_events(self, visits: dict[str, _Visit]) -> list[tuple[list[str], list[str]]]:
        """One insert for every event of the group; duplicates answer with the stored event's id."""
        rows: list[dict[str, Any]] = []
        owner: list[int] = []
        repeated: list[tuple[int, str, str]] = []
        for index, batch in enumerate(self.batches):
            profile_id = self.profile_of[index]
            if profile_id is None:
                continue
            visit = visits.get(_visit_id(batch)) if _has_visit(batch) else None
            if visit is None:
                event_store.add_request_context(batch)
            seen: set[str] = set()
            for event in batch.events:
                if event.dedup_key is not None:
                    if event.dedup_key in seen:
                        repeated.append((index, batch.source.id, event.dedup_key))
                        continue
                    seen.add(event.dedup_key)
                rows.append(
                    {
                        "id": event_store.uuid7(),
                        "source_id": batch.source.id,
                        "profile_id": profile_id,
                        "session_id": visit.id if visit else None,
                        "type": event.type,
                        "time": event.time or batch.meta.received_at,
                        "received_at": batch.meta.received_at,
                        "properties": event.properties,
                        "context": event.context,
                        "dedup_key": event.dedup_key,
                    }
                )
                owner.append(index)
        out: list[tuple[list[str], list[str]]] = [([], []) for _ in self.batches]
        if not rows:
            return out
        inserted = await self._insert(rows)
        missing: list[tuple[int, str, str]] = []
        for row, index in zip(rows, owner, strict=True):
            if row["id"] in inserted:
                out[index][0].append(row["id"])
            else:
                missing.append((index, row["source_id"], row["dedup_key"]))
        missing.extend(repeated)
        if missing:
            existing = await self._existing_ids({(source, key) for _, source, key in missing})
            for index, source, key in missing:
                out[index][1].append(existing[(source, key)])
        return out

    async def _insert(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the rows, skipping known dedup keys; return the ids actually inserted.

        On PostgreSQL the rows travel as one array per column into a statement whose text
        never changes, so it is prepared once per connection, whatever the group's size.
        """
        if self.dialect != "postgresql":
            stmt = insert_ignore(self.dialect, events, ["source_id", "dedup_key"]).returning(events.c.id)
            return set((await self.db.execute(stmt, rows)).scalars())
        columns: dict[str, list[Any]] = {name: [] for name in rows[0]}
        for row in rows:
            for name, value in row.items():
                columns[name].append(value)
        columns["properties"] = [jsonutil.dumps_str(v) for v in columns["properties"]]
        columns["context"] = [jsonutil.dumps_str(v) for v in columns["context"]]
        return set((await self.db.execute(PG_INSERT_EVENTS, columns)).scalars())

    async def _existing_ids(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        by_source: dict[str, list[str]] = defaultdict(list)
        for source, key in keys:
            by_source[source].append(key)
        for source, source_keys in by_source.items():
            rows = await self.db.execute(
                select(events.c.dedup_key, events.c.id).where(
                    events.c.source_id == source, in_ids(self.dialect, events.c.dedup_key, source_keys)
                )
            )
            found.update({(source, row.dedup_key): row.id for row in rows})
        return found

    async def _settle_counts(
        self,
        visits: dict[str, _Visit],
        stored_by_batch: list[tuple[list[str], list[str]]],
    ) -> None:
        """Visits were counted before duplicates were known; take the duplicates back off."""
        stored_per_visit: dict[str, int] = defaultdict(int)
        for index, batch in enumerate(self.batches):
            if self.profile_of[index] is not None and _has_visit(batch):
                stored_per_visit[_visit_id(batch)] += len(stored_by_batch[index][0])
        off = {vid: stored_per_visit[vid] - v.expected for vid, v in visits.items()}
        wrong = [visits[vid] for vid, delta in off.items() if delta != 0]
        if wrong:
            await self._touch(wrong, off)


def _has_visit(batch: IngestBatch) -> bool:
    return batch.session_key is not None and batch.save_session


def _visit_id(batch: IngestBatch) -> str:
    return session_store.session_id_for(batch.source.id, str(batch.session_key))
