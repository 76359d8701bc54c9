"""The bulk path of group commit: a whole group's plain batches in a handful of statements.

A plain batch names nobody but a profile id and a client session (``is_bulk``): Tracardi's
returning visitors, new visits of known profiles and brand-new visitors. For all such
batches of one group at once, ``BulkWriter``

1. finds which hinted profiles are live and keeps them so (a share lock that only a merge
   waits for: concurrent groups do not wait for each other here), and which of the
   group's sessions exist, in one round trip;
2. plans a profile for each new visitor: a batch whose hint names no live profile and
   whose session is new (seed 001: an unknown profile id gets a new one); batches of one
   new session share it;
3. makes those profiles and opens the new sessions (``ON CONFLICT DO NOTHING``: a
   concurrent group may have opened one first);
4. stores every event of the group, then moves each touched session's ``last_event_at``
   and event count by the events actually stored (duplicates are not counted) and each
   live profile's ``last_seen_at`` and visits, each to the latest time of its own batches
   (as the per-batch steps would). These updates come last, just before the
   commit, so the row locks they take (in id order) are held as briefly as possible: two
   groups of one returning visitor queue only for that long.

A batch the bulk path cannot settle is handed back (``None``): a hint that names a merged
profile (the per-batch steps find its survivor, whatever the session), an unknown hint
whose session already exists (lost-profile recovery), a new visitor whose session a
concurrent group opened first. The per-batch steps of
``core/ingest.py`` then follow it in the same transaction.

The SQL lives in a ``BulkStore``: ``db/bulk_pg.py`` (asyncpg, one fixed statement per step)
and ``db/bulk_sqlite.py`` (aiosqlite). This module decides; they only write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from trackway.core import events as event_store
from trackway.core import sessions as session_store
from trackway.core.batch import IngestBatch, IngestResult
from trackway.db.rows import EventColumns, NewSession, Seen


def is_bulk(batch: IngestBatch) -> bool:
    """Nothing to resolve but a profile id and a client session: no identities, merges,
    traits, cart or derived visit."""
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


class BulkStore(Protocol):
    """The statements of the bulk path, in the open transaction of a group."""

    async def find_live_profiles_and_sessions(
        self, profile_ids: list[str], session_ids: list[str]
    ) -> tuple[set[str], set[str], set[str]]:
        """The live ones of ``profile_ids``, kept live (no merge) until the commit; the merged
        ones; and the ones of ``session_ids`` that exist."""
        ...

    async def open_sessions(self, new: list[NewSession], fresh: dict[str, datetime]) -> set[str]:
        """Make the ``fresh`` profiles (anonymous, no traits, created at the time given, with
        the one visit each is made for) and insert the sessions not opened meanwhile; the
        ids opened."""
        ...

    async def delete_profiles(self, ids: list[str]) -> None:
        """Profiles made by this group that ended up unused (nothing points at them)."""
        ...

    async def insert_events(
        self, rows: EventColumns, sessions: dict[str, datetime], seen: dict[str, Seen]
    ) -> set[str]:
        """Store the rows, skipping known dedup keys; then move each of ``sessions``' counts by
        the events stored in it and its ``last_event_at`` to the time given (unless later
        already), and each ``seen`` profile's ``last_seen_at`` likewise and its visits up by
        the number given, locking rows in id order; the ids inserted."""
        ...

    async def stored_event_ids(self, source_id: str, keys: list[str]) -> dict[str, str]:
        """The ids of stored events by dedup key, in one source."""
        ...


@dataclass(slots=True)
class _Visit:
    """One client session touched by the group."""

    id: str
    source_id: str
    client_key: str
    profile_id: str
    first: int  # the index of the batch that opens it
    created: bool = False
    #: The indexes of the group's batches in this visit.
    batches: list[int] = field(default_factory=list)


class BulkWriter:
    """Writes the plain batches of one group; ``run`` answers ``None`` for those it leaves."""

    def __init__(self, store: BulkStore, batches: list[IngestBatch]) -> None:
        self.store = store
        self.batches = batches
        #: The server's session id of each batch (``None``: no session), derived once.
        self.visit_of: list[str | None] = [
            session_store.session_id_for(b.source.id, str(b.session_key)) if _has_visit(b) else None
            for b in batches
        ]
        #: The profile each batch lands on; ``None``: left to the per-batch steps.
        self.profile_of: list[str | None] = [None] * len(batches)
        #: Profiles this group created, and the batch that created each.
        self.fresh: dict[str, int] = {}

    async def run(self) -> list[IngestResult | None]:
        hints = sorted({b.profile_hint for b in self.batches if b.profile_hint is not None})
        wanted = sorted({v for v in self.visit_of if v is not None})
        live, merged, existing = await self.store.find_live_profiles_and_sessions(hints, wanted)
        self.profile_of = [b.profile_hint if b.profile_hint in live else None for b in self.batches]
        fresh_at = self._plan_profiles(existing, merged)
        visits = await self._open_visits(existing, fresh_at)
        stored, duplicates = await self._store_events(visits, self._seen(visits, fresh_at))
        results: list[IngestResult | None] = []
        for index, profile_id in enumerate(self.profile_of):
            if profile_id is None:
                results.append(None)
                continue
            visit = visits.get(self.visit_of[index] or "")
            results.append(
                IngestResult(
                    profile_id=profile_id,
                    session_id=visit.id if visit else None,
                    stored_event_ids=stored[index],
                    duplicate_event_ids=duplicates[index],
                    profile_created=self.fresh.get(profile_id) == index,
                    session_created=bool(visit and visit.created and visit.first == index),
                    resolved_by="new" if profile_id in self.fresh else "hint",
                )
            )
        return results

    def _plan_profiles(self, existing: set[str], merged: set[str]) -> dict[str, datetime]:
        """A new profile for each new session that no live profile of the group opens, unless
        the batch's hint names a merged profile: that batch is left to the per-batch steps.

        Returns when each is created; ``_open_visits`` makes them with their sessions.
        """
        claimed = {
            visit_id
            for visit_id, profile_id in zip(self.visit_of, self.profile_of, strict=True)
            if profile_id is not None and visit_id is not None
        }
        new_for: dict[str, str] = {}
        created_at: dict[str, datetime] = {}
        for index, visit_id in enumerate(self.visit_of):
            if self.profile_of[index] is not None or visit_id is None:
                continue
            if self.batches[index].profile_hint in merged:
                continue  # design.md step 1: a merged hint lands on its survivor
            if visit_id in existing or visit_id in claimed:
                continue  # its session names the profile: the per-batch steps find it
            profile_id = new_for.get(visit_id)
            if profile_id is None:
                profile_id = new_for[visit_id] = str(uuid.uuid4())
                self.fresh[profile_id] = index
                created_at[profile_id] = self.batches[index].meta.received_at
            self.profile_of[index] = profile_id
        return created_at

    async def _open_visits(self, existing: set[str], fresh_at: dict[str, datetime]) -> dict[str, _Visit]:
        """The group's visits; the new ones opened, in id order (so two groups queue, not deadlock)."""
        visits: dict[str, _Visit] = {}
        for index, (visit_id, profile_id) in enumerate(zip(self.visit_of, self.profile_of, strict=True)):
            if profile_id is None or visit_id is None:
                continue
            if visit_id not in visits:
                batch = self.batches[index]
                visits[visit_id] = _Visit(
                    visit_id, batch.source.id, str(batch.session_key), profile_id, index
                )
            visits[visit_id].batches.append(index)
        new = sorted((v for v in visits.values() if v.id not in existing), key=lambda v: v.id)
        if not new:
            return visits
        rows = [
            NewSession(
                id=v.id,
                source_id=v.source_id,
                client_key=v.client_key,
                profile_id=v.profile_id,
                started_at=self.batches[v.first].meta.received_at,
                context=session_store.context_for(self.batches[v.first]),
            )
            for v in new
        ]
        created = await self.store.open_sessions(rows, fresh_at)
        for visit in new:
            visit.created = visit.id in created
        await self._drop_lost([v for v in new if not v.created], visits)
        return visits

    async def _drop_lost(self, lost: list[_Visit], visits: dict[str, _Visit]) -> None:
        """A concurrent group opened these sessions first: a profile made for one is unused.

        Its batches go to the per-batch steps, which find the session's owner. A live
        profile's batches simply continue the session the other group opened.
        """
        unused = {visit.profile_id for visit in lost if visit.profile_id in self.fresh}
        if not unused:
            return
        for visit in lost:
            if visit.profile_id in unused:
                del visits[visit.id]
        self.profile_of = [None if p in unused else p for p in self.profile_of]
        for profile_id in unused:
            del self.fresh[profile_id]
        await self.store.delete_profiles(sorted(unused))

    def _seen(self, visits: dict[str, _Visit], fresh_at: dict[str, datetime]) -> dict[str, Seen]:
        """Each profile the group writes to, with the visits it opened for it and its latest
        batch's time, in id order. A profile made by this group counts its visit already,
        and needs a touch only when a later batch of its own came in the same group."""
        seen: dict[str, Seen] = {}
        for index, profile_id in enumerate(self.profile_of):
            if profile_id is None:
                continue
            at = self.batches[index].meta.received_at
            known = seen.get(profile_id)
            if known is None or known.at < at:
                seen[profile_id] = Seen(known.visits if known else 0, at)
        for visit in visits.values():
            if visit.created and visit.profile_id not in fresh_at:
                seen[visit.profile_id].visits += 1
        return {
            profile_id: entry
            for profile_id, entry in sorted(seen.items())
            if profile_id not in fresh_at or entry.at > fresh_at[profile_id]
        }

    async def _store_events(
        self, visits: dict[str, _Visit], seen: dict[str, Seen]
    ) -> tuple[list[list[str]], list[list[str]]]:
        """One insert for every event of the group; duplicates answer with the stored event's id."""
        rows = EventColumns()
        owner: list[int] = []
        repeated: list[tuple[int, str, str]] = []
        for index, batch in enumerate(self.batches):
            profile_id = self.profile_of[index]
            if profile_id is None:
                continue
            session_id = self.visit_of[index] if self.visit_of[index] in visits else None
            if session_id is None:
                event_store.add_request_context(batch)
            source_id = batch.source.id
            received_at = batch.meta.received_at
            batch_keys: set[str] = set()
            for event in batch.events:
                key = event.dedup_key
                if key is not None:
                    if key in batch_keys:
                        repeated.append((index, source_id, key))
                        continue
                    batch_keys.add(key)
                rows.id.append(event_store.uuid7())
                rows.source_id.append(source_id)
                rows.profile_id.append(profile_id)
                rows.session_id.append(session_id)
                rows.type.append(event.type)
                rows.time.append(event.time or received_at)
                rows.received_at.append(received_at)
                rows.properties.append(event.properties)
                rows.context.append(event.context)
                rows.dedup_key.append(key)
                owner.append(index)
        stored: list[list[str]] = [[] for _ in self.batches]
        duplicates: list[list[str]] = [[] for _ in self.batches]
        touched: dict[str, datetime] = {}
        for visit_id in sorted(visits):
            for index in visits[visit_id].batches:
                at = self.batches[index].meta.received_at
                if visit_id not in touched or touched[visit_id] < at:
                    touched[visit_id] = at
        inserted = await self.store.insert_events(rows, touched, seen)
        missing: list[tuple[int, str, str]] = []
        for event_id, index, source_id, key in zip(
            rows.id, owner, rows.source_id, rows.dedup_key, strict=True
        ):
            if event_id in inserted:
                stored[index].append(event_id)
            else:
                missing.append((index, source_id, str(key)))
        missing.extend(repeated)
        if missing:
            found: dict[tuple[str, str], str] = {}
            by_source: dict[str, list[str]] = {}
            for _, source_id, key in missing:
                by_source.setdefault(source_id, []).append(key)
            for source_id, keys in by_source.items():
                for key, event_id in (await self.store.stored_event_ids(source_id, keys)).items():
                    found[(source_id, key)] = event_id
            for index, source_id, key in missing:
                duplicates[index].append(found[(source_id, key)])
        return stored, duplicates


def _has_visit(batch: IngestBatch) -> bool:
    return batch.session_key is not None and batch.save_session
