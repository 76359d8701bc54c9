"""``ingest(batch, uow)``: the only way data gets in. Ordered steps, one transaction, bounded retry."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core import carts, identity
from trackway.core import events as event_store
from trackway.core import sessions as session_store
from trackway.core.batch import IdentityRef, IngestBatch, IngestResult
from trackway.core.merge import merge_profiles
from trackway.core.uow import UnitOfWork
from trackway.db import statements
from trackway.db.errors import is_retryable, is_unavailable
from trackway.db.models import profiles
from trackway.errors import StorageUnavailable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4

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

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def write(self, batches: list[IngestBatch]) -> list[IngestResult]:
        if not batches:
            return []
        return await ingest_many(batches, self._uow)

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

    The batches run in the order of the person keys they name, not the order they came in,
    and results are handed back in the order they came in. Two requests naming the same
    people then lock their profiles in the same order and wait for each other instead of
    deadlocking (which PostgreSQL would only notice after its deadlock_timeout).
    """
    started = time.perf_counter()
    results = await in_transaction(uow, lambda db: run_in_person_order(db, uow.dialect, batches))
    observe(uow, batches, results, time.perf_counter() - started)
    return results


async def run_in_person_order(
    db: AsyncConnection, dialect: str, batches: list[IngestBatch]
) -> list[IngestResult]:
    """The per-batch steps of each batch in the open transaction, in the order of the person
    keys they name (see ``ingest_many``); the results in the order the batches came in."""
    results: list[IngestResult | None] = [None] * len(batches)
    for i in sorted(range(len(batches)), key=lambda i: _person_key(batches[i])):
        results[i] = await _Run(db, dialect, batches[i]).run()
    return [result for result in results if result is not None]


def _person_key(batch: IngestBatch) -> tuple[str, str, str]:
    """A stable name for the person a batch is about: its strongest key, else its hint."""
    for ref in sorted(batch.identities, key=lambda r: not r.strong):
        return (ref.scope, ref.kind, ref.value)
    return ("", "", batch.profile_hint or batch.session_key or "")


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
            len(result.stored_event_ids),
            len(result.duplicate_event_ids),
            len(result.merged),
        )


async def in_transaction(uow: UnitOfWork, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction and commit it, retrying conflicts.

    A conflict with a concurrent transaction (deadlock, serialization failure, SQLite
    busy) is retried here with jittered backoff, never by a dialect. A database that
    cannot be reached is a ``StorageUnavailable``: nothing was acknowledged.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with uow.transaction() as db:
                return await work(db)
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable() from exc
            if attempt < MAX_ATTEMPTS and isinstance(exc, _MergedMeanwhile):
                continue  # the rollback dropped the stale lock; the next attempt sees the survivor
            if attempt < MAX_ATTEMPTS and is_retryable(exc):
                log.info("ingest retry %d after %s", attempt, getattr(exc, "orig", exc))
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
                continue
            raise
    raise AssertionError("unreachable")


class _MergedMeanwhile(Exception):
    """The profile this batch resolved was merged while the batch waited for its row lock.

    PostgreSQL's ``UPDATE`` re-checks a row that changed while it waited only after
    locking its newest version, so the batch may now hold a lock on the merged row,
    outside the merges' id order. Starting the transaction again drops that lock.
    """


@dataclass
class _Run:
    """One attempt at one batch, inside one transaction."""

    db: AsyncConnection
    dialect: str
    batch: IngestBatch
    merged: list[str] = field(default_factory=list)
    #: Identities already known to point at the resolved profile.
    linked: set[IdentityRef] = field(default_factory=set)
    session_id: str | None = None
    session_created: bool = False
    #: Events already added to the session's count, before knowing which were duplicates.
    counted: int = 0
    #: The resolved profile's row, locked by this transaction (see ``_lock_live``).
    row: dict[str, Any] | None = None

    async def run(self) -> IngestResult:
        batch = self.batch
        now = batch.meta.received_at
        repeated = await self._resent()
        if repeated is not None:
            return repeated
        for merge in batch.merges:
            await self._explicit_merge(merge.src, merge.dest, merge.reason)
        profile_id, resolved_by, created = await self._resolve()
        row = self.row if self.row is not None and self.row["id"] == profile_id else None
        row = row or await self._lock_live(profile_id, resolved_live=True)
        if row is None:
            raise LookupError(f"profile {profile_id} vanished")
        profile_id = row["id"]
        profile_id = await self._link_identities(profile_id)
        if profile_id != row["id"]:
            row = await self._lock_live(profile_id, resolved_live=True)
            assert row is not None
        for ref in batch.unlink:
            await identity.unlink(self.db, ref, profile_id)

        if batch.session_key is not None and batch.save_session and self.session_id is None:
            await self._client_session(profile_id)

        visit_at = self._visit_time()
        if batch.visit_key is not None and batch.save_session and self.session_id is None:
            self.session_id, self.session_created = await session_store.continue_or_open_visit(
                self.db,
                self.dialect,
                source_id=batch.source.id,
                visit_key=batch.visit_key,
                profile_id=profile_id,
                at=visit_at,
                timeout_seconds=batch.visit_timeout,
                context=self._session_context,
            )

        if self.session_id is None:
            event_store.add_request_context(batch)
        stored, duplicates = await event_store.store(
            self.db,
            self.dialect,
            source_id=batch.source.id,
            profile_id=profile_id,
            session_id=self.session_id,
            batch_events=batch.events,
            received_at=now,
        )
        if self.session_id is not None and (len(stored) != self.counted or self.counted == 0):
            if not (self.session_created and not stored):
                await session_store.touch(
                    self.db, self.session_id, now=visit_at, events=len(stored) - self.counted
                )
        if batch.cart is not None:
            await carts.change(
                self.db,
                self.dialect,
                profile_id=profile_id,
                source_id=batch.source.id,
                cart_change=batch.cart,
                now=now,
            )
        await self._update_profile(row)
        return IngestResult(
            profile_id=profile_id,
            session_id=self.session_id,
            stored_event_ids=stored,
            duplicate_event_ids=duplicates,
            profile_created=created,
            session_created=self.session_created,
            resolved_by=resolved_by,
            merged=self.merged,
        )

    async def _resent(self) -> IngestResult | None:
        """A batch that only repeats stored events (a retried Tracify purchase) writes nothing.

        It is answered with the profile the stored events belong to, even when it names
        other people than the first send did: a duplicate creates no profile, links no
        identity and moves no clock. ``None``: the batch has something new to write.
        """
        batch = self.batch
        keys = [event.dedup_key for event in batch.events]
        if not keys or None in keys or batch.traits or batch.merges or batch.unlink or batch.cart:
            return None
        params = {"source_id": batch.source.id, "keys": sorted(set(keys))}
        stored = {row.dedup_key: row for row in await self.db.execute(statements.STORED_EVENTS, params)}
        if len(stored) != len(params["keys"]):
            return None
        owner = stored[keys[0]].profile_id  # type: ignore[index]
        live = await identity.live_profile_id(self.db, owner) if owner is not None else None
        if live is None:
            return None
        return IngestResult(
            profile_id=live,
            session_id=None,
            stored_event_ids=[],
            duplicate_event_ids=[stored[key].id for key in keys],  # type: ignore[index]
            profile_created=False,
            session_created=False,
            resolved_by="duplicate",
        )

    def _expected_events(self) -> int:
        return event_store.expected_count(self.batch.events)

    async def _client_session(self, profile_id: str) -> None:
        """Continue the client's session (one UPDATE for a returning visitor) or open it."""
        batch = self.batch
        now = batch.meta.received_at
        expected = self._expected_events()
        session_id = session_store.session_id_for(batch.source.id, batch.session_key or "")
        if await session_store.touch(self.db, session_id, now=now, events=expected):
            self.session_id, self.counted = session_id, expected
            return
        self.session_id, self.session_created, _owner = await session_store.claim(
            self.db,
            self.dialect,
            source_id=batch.source.id,
            client_key=batch.session_key or "",
            profile_id=profile_id,
            now=now,
            context=self._session_context,
            events=expected,
        )
        if self.session_created:
            self.counted = expected

    def _visit_time(self) -> datetime:
        """When this batch happened: its first event's time for derived visits, else receipt."""
        if self.batch.visit_key is not None:
            for event in self.batch.events:
                if event.time is not None:
                    return event.time
        return self.batch.meta.received_at

    def _session_context(self) -> dict[str, Any]:
        return session_store.context_for(self.batch)

    async def _resolve(self) -> tuple[str, str, bool]:
        """Hint, then identities, then the session, then a new profile (design.md, step 1)."""
        batch = self.batch
        if batch.profile_hint:
            self.row = await self._lock_live(batch.profile_hint)
            if self.row is not None:
                return self.row["id"], "hint", False
        found = await identity.lookup(self.db, batch.identities)
        self.linked = set(found)
        strong = list(dict.fromkeys(pid for ref, pid in found.items() if ref.strong))
        weak = list(dict.fromkeys(pid for ref, pid in found.items() if not ref.strong))
        if strong:
            survivor = await identity.oldest(self.db, strong)
            for other in strong:
                if other != survivor:
                    survivor = await self._merge(other, survivor, "shared-identity")
            # A weak key (a visit hash) found an anonymous profile: the visit before the
            # person was known. Now that a strong key names them, it joins their profile.
            for other in weak:
                if other != survivor and await identity.is_anonymous(self.db, other):
                    survivor = await self._merge(other, survivor, "identified-visit")
            return survivor, "identity", False
        if weak:
            # A weak key may name someone else who shares it (one IP and browser); it only
            # finds the profile if that profile is anonymous or the batch names nobody stronger.
            candidate = weak[0]
            has_strong = any(ref.strong for ref in batch.identities)
            if not has_strong or await identity.is_anonymous(self.db, candidate):
                return candidate, "identity", False
            self.linked -= {ref for ref in found if not ref.strong}
        if batch.session_key is not None:
            owner = await session_store.owner_of(self.db, batch.source.id, batch.session_key)
            if owner is not None:
                live = await identity.live_profile_id(self.db, owner)
                if live is not None:
                    return live, "session", False
        return await self._create()

    async def _create(self) -> tuple[str, str, bool]:
        """A new profile, claimed by the batch's first key so racing first hits end on one."""
        batch = self.batch
        now = batch.meta.received_at
        profile_id = await identity.create_profile(self.db, now, anonymous=not bool(batch.identified))
        if batch.identities:
            # Claim the strongest key: a weak one may already belong to someone else.
            ref = next((r for r in batch.identities if r.strong), batch.identities[0])
            owner = await identity.link(self.db, self.dialect, ref, profile_id, now)
            if owner != profile_id:
                await identity.delete_unused_profile(self.db, profile_id)
                self.linked.add(ref)
                return owner, "identity", False
            self.linked.add(ref)
        elif batch.session_key is not None and batch.save_session:
            expected = self._expected_events()
            session_id, created, owner = await session_store.claim(
                self.db,
                self.dialect,
                source_id=batch.source.id,
                client_key=batch.session_key,
                profile_id=profile_id,
                now=now,
                context=self._session_context,
                events=expected,
            )
            self.session_id = session_id
            if not created:
                await identity.delete_unused_profile(self.db, profile_id)
                live = await identity.live_profile_id(self.db, owner)
                return live or owner, "session", False
            self.session_created = True
            self.counted = expected
        return profile_id, "new", True

    async def _explicit_merge(self, src: IdentityRef, dest: IdentityRef, reason: str) -> None:
        """Alias ``src`` to ``dest``: neither needs to exist yet; afterwards both name one profile."""
        now = self.batch.meta.received_at
        found = await identity.lookup(self.db, [dest, src])
        dest_id = found.get(dest)
        if dest_id is None:
            dest_id = await identity.create_profile(self.db, now, anonymous=not bool(self.batch.identified))
            owner = await identity.link(self.db, self.dialect, dest, dest_id, now)
            if owner != dest_id:
                await identity.delete_unused_profile(self.db, dest_id)
                dest_id = owner
        src_id = found.get(src)
        if src_id is None:
            owner = await identity.link(self.db, self.dialect, src, dest_id, now)
            src_id = owner
        if src_id != dest_id:
            await self._merge(src_id, dest_id, reason)

    async def _merge(self, from_id: str, into_id: str, reason: str) -> str:
        survivor = await merge_profiles(
            self.db,
            from_id=from_id,
            into_id=into_id,
            reason=reason,
            source_id=self.batch.source.id,
            now=self.batch.meta.received_at,
        )
        if from_id != survivor:
            self.merged.append(from_id)
        return survivor

    async def _lock_live(self, profile_id: str, *, resolved_live: bool = False) -> dict[str, Any] | None:
        """Lock the profile's row for this batch, mark it seen, and make sure it is still live.

        The ``UPDATE`` takes the row lock (``FOR NO KEY UPDATE``) of a live profile. A
        merge locks ``FOR UPDATE``: this waits for it, then finds the row merged, so the
        batch never writes into a merged profile. ``None``: no such profile.
        """
        now = self.batch.meta.received_at
        for _ in range(identity.MAX_CHAIN):
            params = {"pid": profile_id, "at": now}
            row = (await self.db.execute(statements.LOCK_LIVE_PROFILE, params)).mappings().first()
            if row is not None:
                return dict(row)
            merged = (await self.db.execute(statements.MERGED_INTO, {"id": profile_id})).first()
            if merged is None:
                return None
            if merged[0] is not None:
                if resolved_live:
                    raise _MergedMeanwhile(profile_id)
                profile_id = merged[0]
        raise RuntimeError(f"merge chain from profile {profile_id} is too long")

    async def _link_identities(self, profile_id: str) -> str:
        """Point the batch's identities at the profile; a key held by another profile joins them."""
        now = self.batch.meta.received_at
        for ref in self.batch.identities:
            if ref in self.linked:
                continue
            owner = await identity.link(self.db, self.dialect, ref, profile_id, now)
            self.linked.add(ref)
            if owner != profile_id and ref.strong:
                survivor = await identity.oldest(self.db, [profile_id, owner])
                loser = owner if survivor == profile_id else profile_id
                profile_id = await self._merge(loser, survivor, "shared-identity")
        return profile_id

    async def _update_profile(self, row: dict[str, Any]) -> None:
        batch = self.batch
        now = batch.meta.received_at
        values: dict[str, Any] = {}
        if self.session_created:
            values["visits"] = profiles.c.visits + 1
        if batch.traits:
            traits = event_store.apply_traits(row["traits"], batch.traits)
            if traits != row["traits"]:
                values["traits"] = traits
                values["updated_at"] = now
        if batch.identified and row["anonymous"]:
            values["anonymous"] = False
            values["updated_at"] = now
        if values:
            await self.db.execute(update(profiles).where(profiles.c.id == row["id"]).values(values))
