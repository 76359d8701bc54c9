"""The one write path: every batch of a group, whatever its dialect, in a few statements a step.

A group is what one transaction writes: one request's batches (group commit off) or many
requests' (on). ``GroupWrite`` runs design.md's steps for all of them at once:

1. **Load** what the group names, in a few statements whatever its size: the hinted
   profiles and the client sessions (one statement, the only one a Tracardi returning
   visitor needs), every identity with its owner, the latest derived visit of each visit
   key, and the stored events a resend repeats. Every profile found is locked
   (``FOR NO KEY UPDATE``, in id order, in one statement) so no merge can move it and no
   other group can change its traits or cart until this one commits.
2. **Decide**, batch by batch in the order of the people they name, in memory: which
   profile each lands on (``_resolve``: the hint, else the identities, else the session,
   else a new profile), which identities to link and unlink, which visit it continues or
   opens, its trait patch, its cart. A batch sees what the batches before it in the group
   decided, exactly as if each had committed on its own: that is what makes the answer
   the same with and without group commit. Nothing is written yet.
3. **Write** everything decided, as sets: new profiles with their sessions, identity links,
   events (duplicates skipped by the unique key), then the counters, clocks, traits and
   carts, each in id order. A race lost to another transaction (an identity or a session
   it created first) starts the group again: the next attempt loads the winner's rows.

Merges (an alias, a guest registering, two profiles sharing an email) are rare: when a
batch needs one, what was decided so far is written first, the merge runs on the rows
(``core/merge.py``), and the group goes on from what the database then holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core import carts as cart_rules
from trackway.core import events as event_store
from trackway.core import sessions as session_store
from trackway.core import suppression
from trackway.core.batch import IdentityRef, IngestBatch, IngestResult
from trackway.core.identity import email_sha256
from trackway.core.merge import merge_profiles
from trackway.db.group_store import GroupStore, ProfileRow, store_for
from trackway.db.rows import (
    CartRow,
    CartState,
    EventColumns,
    IdentityLink,
    NewProfile,
    NewSession,
    ProfileChange,
    Seen,
)

#: A key of the identities table.
Key = tuple[str, str, str]


class LostRace(Exception):
    """A concurrent transaction created a row this group meant to create (an identity, a
    session): the group is written again, and then finds that row."""


def _key(ref: IdentityRef) -> Key:
    return (ref.scope, ref.kind, ref.value)


def person_key(batch: IngestBatch) -> tuple[str, str, str]:
    """A stable name for the person a batch is about: its strongest key, else its hint."""
    for ref in sorted(batch.identities, key=lambda r: not r.strong):
        return (ref.scope, ref.kind, ref.value)
    return ("", "", batch.profile_hint or batch.session_key or "")


@dataclass(slots=True)
class _Profile:
    """A profile as this group sees it: as loaded (or made here), with what it decided."""

    id: str
    traits: dict[str, Any]
    anonymous: bool
    created_at: datetime
    merged_into: str | None = None
    #: Named by a secure source: only verified batches reach it (design.md, "Trust").
    protected: bool = False
    new: bool = False
    visits: int = 0
    seen_at: datetime | None = None
    updated_at: datetime | None = None
    #: The batch (index) that made it, for ``profile_created``.
    made_by: int = -1

    def see(self, at: datetime) -> None:
        if self.seen_at is None or self.seen_at < at:
            self.seen_at = at


@dataclass(slots=True)
class _Visit:
    """A derived visit (dialects without session ids): its id and clock."""

    id: str
    last_event_at: datetime


@dataclass(slots=True)
class _Pending:
    """What the group has decided and not yet written."""

    links: dict[Key, IdentityLink] = field(default_factory=dict)
    unlinks: dict[Key, str] = field(default_factory=dict)
    #: Keys whose loss to another transaction means this group decided on wrong facts.
    must_win: set[Key] = field(default_factory=set)
    sessions: dict[str, NewSession] = field(default_factory=dict)
    touched: dict[str, datetime] = field(default_factory=dict)
    events: EventColumns = field(default_factory=EventColumns)
    #: For each event row: the batch it came from (``-1``: generated, a cart outcome).
    owner: list[int] = field(default_factory=list)
    carts: dict[tuple[str, str], tuple[CartState, datetime]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.links or self.unlinks or self.sessions or self.touched or len(self.events) or self.carts
        )


@dataclass(slots=True)
class _Outcome:
    """One batch's result, before the write tells which of its events were duplicates."""

    profile_id: str
    session_id: str | None
    event_ids: list[str]
    duplicates: list[str]
    profile_created: bool
    session_created: bool
    resolved_by: str
    merged: list[str]
    #: Dedup keys of ``event_ids`` (``None`` for events without one), for duplicates found late.
    keys: list[str | None]
    suppressed: bool = False


class GroupWrite:
    """Writes one group of batches in the open transaction ``db``; ``run`` returns their results
    in the order the batches came in."""

    def __init__(self, db: AsyncConnection, dialect: str, batches: list[IngestBatch]) -> None:
        self.db = db
        self.dialect = dialect
        self.batches = batches
        self.store: GroupStore = store_for(db, dialect)
        self.profiles: dict[str, _Profile | None] = {}
        self.identities: dict[Key, str | None] = {}
        #: Client sessions by server id: the profile that owns each (``None``: no such session).
        self.sessions: dict[str, str | None] = {}
        self.visits: dict[tuple[str, str, str], _Visit] = {}
        #: The (source, visit key) pairs whose latest visits are loaded.
        self.visit_keys: set[tuple[str, str]] = set()
        #: Stored events by (source, dedup key): (event id, profile id, session id).
        self.stored: dict[tuple[str, str], tuple[str, str | None, str | None]] = {}
        #: Events this group decided to store, by (source, dedup key): their ids.
        self.planned_keys: dict[tuple[str, str], str] = {}
        self.carts: dict[tuple[str, str], CartState] = {}
        self.pending = _Pending()
        self.outcomes: list[_Outcome | None] = [None] * len(batches)
        self._session_ids: dict[tuple[str, str], str] = {}
        #: Whether any batch may change a profile's row (traits, flags): only then are traits read.
        self.needs_traits = any(b.traits or b.email_trait or b.identified or b.protect for b in batches)

    # --- the group ------------------------------------------------------------------------------

    async def run(self) -> list[IngestResult]:
        await self._load()
        dropped, free = await self._suppressed()
        for index in sorted(range(len(self.batches)), key=lambda i: person_key(self.batches[i])):
            self.outcomes[index] = self._dropped(index) if index in dropped else await self._decide(index)
        await self._write()
        if not await suppression.still_free(self.db, free):
            raise LostRace("a key this group stored was suppressed by an erasure meanwhile")
        return [self._result(outcome) for outcome in self.outcomes if outcome is not None]

    async def _load(self) -> None:
        """Step 1: everything the group names, in a few statements, the profiles locked."""
        batches = self.batches
        hints = {b.profile_hint for b in batches if b.profile_hint}
        session_ids = {
            self._session_id_for(b.source.id, b.session_key) for b in batches if b.session_key is not None
        }
        profiles, owners = await self.store.load_profiles_and_sessions(
            sorted(hints), sorted(session_ids), traits=self.needs_traits
        )
        self._keep_profiles(profiles)
        self.sessions.update(dict.fromkeys(session_ids))
        self.sessions.update(owners)
        refs = {_key(ref) for b in batches for ref in (*b.identities, *b.unlink)}
        refs.update(_key(ref) for b in batches for m in b.merges for ref in (m.src, m.dest))
        wanted: set[str] = set(owners.values())
        if refs:
            found = await self.store.identity_owners(sorted(refs))
            self.identities.update(dict.fromkeys(refs))
            self.identities.update(found)
            wanted.update(found.values())
        await self._load_profiles(wanted)
        await self._load_visits({(b.source.id, b.visit_key) for b in batches if b.visit_key is not None})
        by_source: dict[str, set[str]] = {}
        for b in batches:
            if _only_repeats(b) and not self._names_a_profile(b):
                by_source.setdefault(b.source.id, set()).update(str(e.dedup_key) for e in b.events)
            elif b.cart is not None and any(e.dedup_key is not None for e in b.events):
                # A resent purchase is known before its cart change: it must not empty a later cart.
                keys = {str(e.dedup_key) for e in b.events if e.dedup_key is not None}
                by_source.setdefault(b.source.id, set()).update(keys)
        for source_id, dedup_keys in by_source.items():
            for key, row in (await self.store.stored_events(source_id, sorted(dedup_keys))).items():
                self.stored[(source_id, key)] = row

    async def _suppressed(self) -> tuple[set[int], set[str]]:
        """After the load: rows whose profile is gone (an erasure committed while this group
        waited for its locks) name nobody; then the batches naming a suppressed key, which
        are answered and not written (``core/suppression.py``)."""
        for rows in (self.identities, self.sessions):
            for key, owner in rows.items():
                if owner is not None and self.profiles.get(owner) is None:
                    rows[key] = None  # type: ignore[index]
        return await suppression.suppressed_batches(
            self.db,
            self.batches,
            lambda key: (
                self.profiles.get(key[2]) is None
                if key[1] == suppression.PROFILE_KIND
                else self.identities.get(key) is None
            ),
        )

    def _dropped(self, index: int) -> _Outcome:
        """A suppressed batch's answer, shaped as usual; its ids name nothing stored."""
        batch = self.batches[index]
        hint = batch.profile_hint
        return _Outcome(
            profile_id=hint or str(uuid.uuid4()),
            session_id=self._session_id(batch)
            if batch.session_key is not None and batch.save_session
            else None,
            event_ids=[event_store.uuid7() for _ in batch.events],
            duplicates=[],
            profile_created=hint is None,
            session_created=False,
            resolved_by="hint" if hint else "new",
            merged=[],
            keys=[],
            suppressed=True,
        )

    async def _load_profiles(self, ids: set[str]) -> None:
        """Lock and read the profiles not read yet, and the survivors of merged ones."""
        for _ in range(identity_chain_limit()):
            missing = sorted(pid for pid in ids if pid not in self.profiles)
            if not missing:
                return
            rows, _owners = await self.store.load_profiles_and_sessions(missing, [], traits=self.needs_traits)
            self._keep_profiles(rows)
            self.profiles.update({pid: None for pid in missing if pid not in self.profiles})
            ids = {row.merged_into for row in rows.values() if row.merged_into is not None}
        raise RuntimeError("merge chain too long")

    async def _load_visits(self, keys: set[tuple[str, str]]) -> None:
        keys -= self.visit_keys
        if not keys:
            return
        self.visit_keys |= keys
        for (source_id, visit_key, profile_id), (visit_id, at) in (
            await self.store.latest_visits(sorted(keys))
        ).items():
            self.visits[(source_id, visit_key, profile_id)] = _Visit(visit_id, at)

    async def _session_owner(self, session_id: str) -> str | None:
        """The profile that owns a client session (as loaded or opened here), or ``None``."""
        if session_id not in self.sessions:
            _rows, owners = await self.store.load_profiles_and_sessions([], [session_id], traits=False)
            self.sessions[session_id] = owners.get(session_id)
        return self.sessions[session_id]

    def _keep_profiles(self, rows: dict[str, ProfileRow]) -> None:
        for row in rows.values():
            self.profiles[row.id] = _Profile(
                id=row.id,
                traits=dict(row.traits or {}),
                anonymous=row.anonymous,
                created_at=row.created_at,
                merged_into=row.merged_into,
                protected=row.protected,
            )

    async def _live(self, profile_id: str | None) -> _Profile | None:
        """The live profile an id stands for (following merges); ``None``: no such profile."""
        for _ in range(identity_chain_limit()):
            if profile_id is None:
                return None
            if profile_id not in self.profiles:
                await self._load_profiles({profile_id})
            profile = self.profiles[profile_id]
            if profile is None or profile.merged_into is None:
                return profile
            profile_id = profile.merged_into
        raise RuntimeError("merge chain too long")

    # --- step 2: one batch, decided in memory ---------------------------------------------------

    async def _decide(self, index: int) -> _Outcome:
        batch = self.batches[index]
        repeated = await self._resent(batch)
        if repeated is not None:
            return repeated
        merged: list[str] = []
        for merge in batch.merges:
            merged.extend(await self._explicit_merge(batch, merge.src, merge.dest, merge.reason))
        profile, resolved_by, linked, session_id, session_created = await self._resolve(index, merged)
        profile = await self._link(batch, profile, linked, merged)
        for ref in batch.unlink:
            await self._unlink(ref, profile.id)
        if batch.email_trait is not None:
            await self._follow_email(batch, batch.email_trait, profile)
        now = batch.meta.received_at
        profile.see(now)
        if session_id is None and batch.session_key is not None and batch.save_session:
            session_id, session_created = await self._client_session(index, profile)
        visit_at = _visit_time(batch)
        if batch.visit_key is not None and batch.save_session and session_id is None:
            session_id, session_created = await self._derived_visit(index, profile, visit_at)
        if session_id is None:
            event_store.add_request_context(batch)
        event_ids, duplicates, keys = self._events(index, profile.id, session_id)
        if session_id is not None and not (session_created and not event_ids):
            at = visit_at if batch.visit_key is not None else now
            if session_id not in self.pending.touched or self.pending.touched[session_id] < at:
                self.pending.touched[session_id] = at
        if batch.cart is not None and (event_ids or not batch.events):  # not when all were resent
            await self._cart(batch, profile.id)
        if session_created:
            profile.visits += 1
        if batch.traits:
            traits = event_store.apply_traits(profile.traits, batch.traits)
            if traits != profile.traits:
                profile.traits = traits
                profile.updated_at = now
        if batch.identified and profile.anonymous:
            profile.anonymous = False
            profile.updated_at = now
        if batch.protect and not profile.protected:
            profile.protected = True
            profile.updated_at = now
        return _Outcome(
            profile_id=profile.id,
            session_id=session_id,
            event_ids=event_ids,
            duplicates=duplicates,
            profile_created=profile.made_by == index,
            session_created=session_created,
            resolved_by=resolved_by,
            merged=merged,
            keys=keys,
        )

    async def _resent(self, batch: IngestBatch) -> _Outcome | None:
        """A batch that only repeats stored events (a retried purchase) writes nothing.

        It is answered with the profile the stored events belong to, even when it names
        other people than the first send did: a duplicate creates no profile, links no
        identity and moves no clock. ``None``: the batch has something new to write, or names
        a stored profile by its id (a Tracardi retry), which then answers as always: the hot
        path of returning visitors pays no lookup for it.
        """
        if not _only_repeats(batch) or self._names_a_profile(batch):
            return None
        found = [self.stored.get((batch.source.id, str(e.dedup_key))) for e in batch.events]
        if None in found:
            return None
        first = found[0]
        assert first is not None
        profile = await self._live(first[1])
        if profile is None or _barred(batch, profile):
            return None
        return _Outcome(
            profile_id=profile.id,
            session_id=first[2],
            event_ids=[],
            duplicates=[row[0] for row in found if row is not None],
            profile_created=False,
            session_created=False,
            resolved_by="duplicate",
            merged=[],
            keys=[],
        )

    def _names_a_profile(self, batch: IngestBatch) -> bool:
        """The batch's hint names a stored profile (loaded by the group's first statement)."""
        return batch.profile_hint is not None and self.profiles.get(batch.profile_hint) is not None

    async def _owner(self, ref: IdentityRef) -> _Profile | None:
        """The live profile an identity names, as this group has left it."""
        key = _key(ref)
        if key not in self.identities:
            self.identities.update(await self.store.identity_owners([key]) or {key: None})
        return await self._live(self.identities.get(key))

    async def _reachable(self, batch: IngestBatch, profile_id: str | None) -> _Profile | None:
        """The live profile an id stands for, unless the batch may not reach it (``_barred``)."""
        profile = await self._live(profile_id)
        return None if profile is None or _barred(batch, profile) else profile

    async def _resolve(
        self, index: int, merged: list[str]
    ) -> tuple[_Profile, str, set[IdentityRef], str | None, bool]:
        """Hint, then identities, then the session, then a new profile (design.md, step 1).

        Returns the profile, how it was found, the identities already pointing at it, and
        the session when making the profile opened it.
        """
        batch = self.batches[index]
        if batch.profile_hint:
            hinted = await self._reachable(batch, batch.profile_hint)
            if hinted is not None:
                return hinted, "hint", set(), None, False
        found: dict[IdentityRef, _Profile] = {}
        for ref in batch.identities:
            owner = await self._owner(ref)
            if owner is not None and not _barred(batch, owner):
                found[ref] = owner
        linked = set(found)
        strong = list({p.id: p for ref, p in found.items() if ref.strong}.values())
        weak = list({p.id: p for ref, p in found.items() if not ref.strong}.values())
        if strong:
            survivor = min(strong, key=lambda p: (p.created_at, p.id))
            for other in strong:
                if other.id != survivor.id:
                    survivor = await self._merge(other.id, survivor.id, "shared-identity", batch, merged)
            # A weak key (a visit hash) found an anonymous profile: the visit before the
            # person was known. Now that a strong key names them, it joins their profile.
            for other in weak:
                other_live = await self._reachable(batch, other.id)
                if other_live is not None and other_live.id != survivor.id and other_live.anonymous:
                    survivor = await self._merge(
                        other_live.id, survivor.id, "identified-visit", batch, merged
                    )
            return survivor, "identity", linked, None, False
        if weak:
            # A weak key may name someone else who shares it (one IP and browser); it only
            # finds the profile if that profile is anonymous or the batch names nobody stronger.
            candidate = weak[0]
            if not any(ref.strong for ref in batch.identities) or candidate.anonymous:
                return candidate, "identity", linked, None, False
            linked -= {ref for ref in found if not ref.strong}
        if batch.session_key is not None:
            owner = await self._reachable(batch, await self._session_owner(self._session_id(batch)))
            if owner is not None:
                return owner, "session", linked, None, False
        return self._create(index, linked)

    def _create(
        self, index: int, linked: set[IdentityRef]
    ) -> tuple[_Profile, str, set[IdentityRef], str | None, bool]:
        """A new profile, claimed by the batch's strongest key (or its session) so that first
        hits racing in other transactions end on one: the loser's group is written again."""
        batch = self.batches[index]
        now = batch.meta.received_at
        profile = self._new_profile(batch, made_by=index)
        # Claim the strongest key nobody holds (a held one is a protected profile's).
        free = [ref for ref in batch.identities if self.identities.get(_key(ref)) is None]
        if free:
            ref = next((r for r in free if r.strong), free[0])
            self._plan_link(ref, profile.id, now, must_win=True)
            linked.add(ref)
            return profile, "new", linked, None, False
        if batch.session_key is not None and batch.save_session:
            session_id = self._open_session(index, profile.id, batch.session_key, now, None)
            return profile, "new", linked, session_id, True
        return profile, "new", linked, None, False

    def _new_profile(self, batch: IngestBatch, *, made_by: int) -> _Profile:
        now = batch.meta.received_at
        profile = _Profile(
            id=str(uuid.uuid4()),
            traits={},
            anonymous=not bool(batch.identified),
            created_at=now,
            new=True,
            made_by=made_by,
        )
        profile.see(now)
        self.profiles[profile.id] = profile
        return profile

    async def _link(
        self, batch: IngestBatch, profile: _Profile, linked: set[IdentityRef], merged: list[str]
    ) -> _Profile:
        """Point the batch's identities at the profile; a strong key held by another joins them."""
        now = batch.meta.received_at
        for ref in batch.identities:
            if ref in linked:
                continue
            linked.add(ref)
            owner = await self._owner(ref)
            if owner is None:
                self._plan_link(ref, profile.id, now, must_win=ref.strong)
            elif _barred(batch, owner):
                continue  # a protected profile's key: not this caller's to claim, nor to join
            elif owner.id != profile.id and ref.strong:
                survivor = min((profile, owner), key=lambda p: (p.created_at, p.id))
                loser = owner if survivor.id == profile.id else profile
                profile = await self._merge(loser.id, survivor.id, "shared-identity", batch, merged)
        return profile

    def _plan_link(self, ref: IdentityRef, profile_id: str, now: datetime, *, must_win: bool) -> None:
        key = _key(ref)
        self.identities[key] = profile_id
        self.pending.links[key] = IdentityLink(*key, profile_id=profile_id, created_at=now)
        self.pending.unlinks.pop(key, None)
        if must_win:
            self.pending.must_win.add(key)

    async def _follow_email(self, batch: IngestBatch, name: str, profile: _Profile) -> None:
        """The email trait changes: the address it held no longer names this profile."""
        if name in batch.traits.set:
            new = batch.traits.set[name]
        elif name in batch.traits.remove:
            new = None
        else:
            return
        old = profile.traits.get(name)
        if not isinstance(old, str) or not old:
            return
        if isinstance(new, str) and email_sha256(new) == email_sha256(old):
            return
        await self._unlink(IdentityRef("email_sha256", email_sha256(old)), profile.id)

    async def _unlink(self, ref: IdentityRef, profile_id: str) -> None:
        """Detach ``ref`` from ``profile_id`` (and only from it: another owner keeps its key)."""
        key = _key(ref)
        if key not in self.identities:
            self.identities.update(await self.store.identity_owners([key]) or {key: None})
        if self.identities.get(key) != profile_id:
            return
        self.identities[key] = None
        if self.pending.links.pop(key, None) is None:
            self.pending.unlinks[key] = profile_id
        self.pending.must_win.discard(key)

    def _session_id(self, batch: IngestBatch) -> str:
        return self._session_id_for(batch.source.id, str(batch.session_key))

    def _session_id_for(self, source_id: str, client_key: str) -> str:
        """The server's session id of a client key (a UUID5: worth deriving once a group)."""
        key = (source_id, client_key)
        session_id = self._session_ids.get(key)
        if session_id is None:
            session_id = self._session_ids[key] = session_store.session_id_for(source_id, client_key)
        return session_id

    async def _client_session(self, index: int, profile: _Profile) -> tuple[str, bool]:
        """Continue the client's session, or open it for this profile."""
        batch = self.batches[index]
        session_id = self._session_id(batch)
        if await self._session_owner(session_id) is not None:
            return session_id, False
        return self._open_session(
            index, profile.id, str(batch.session_key), batch.meta.received_at, None
        ), True

    def _open_session(
        self, index: int, profile_id: str, client_key: str, at: datetime, visit_key: str | None
    ) -> str:
        batch = self.batches[index]
        session_id = self._session_id_for(batch.source.id, client_key)
        self.sessions[session_id] = profile_id
        self.pending.sessions[session_id] = NewSession(
            id=session_id,
            source_id=batch.source.id,
            client_key=client_key,
            profile_id=profile_id,
            started_at=at,
            context=session_store.context_for(batch),
            visit_key=visit_key,
        )
        return session_id

    async def _derived_visit(self, index: int, profile: _Profile, at: datetime) -> tuple[str, bool]:
        """The profile's visit under the batch's visit key, or a new one after the timeout."""
        batch = self.batches[index]
        await self._load_visits({(batch.source.id, str(batch.visit_key))})
        key = (batch.source.id, str(batch.visit_key), profile.id)
        latest = self.visits.get(key)
        if latest is not None and abs(at - latest.last_event_at) <= timedelta(seconds=batch.visit_timeout):
            if latest.last_event_at < at:
                latest.last_event_at = at
            return latest.id, False
        session_id = self._open_session(index, profile.id, f"visit:{uuid.uuid4()}", at, batch.visit_key)
        self.visits[key] = _Visit(session_id, at)
        return session_id, True

    def _events(
        self, index: int, profile_id: str, session_id: str | None
    ) -> tuple[list[str], list[str], list[str | None]]:
        """The batch's events as rows to insert; a key seen before (stored, earlier in the group
        or earlier in the batch) is a duplicate answered with the first event's id."""
        batch = self.batches[index]
        rows = self.pending.events
        stored: list[str] = []
        duplicates: list[str] = []
        keys: list[str | None] = []
        received_at = batch.meta.received_at
        source_id = batch.source.id
        for event in batch.events:
            key = event.dedup_key
            if key is not None:
                first = self.planned_keys.get((source_id, key))
                if first is not None:
                    duplicates.append(first)
                    continue
                known = self.stored.get((source_id, key))
                if known is not None:
                    duplicates.append(known[0])
                    continue
            event_id = event_store.uuid7()
            if key is not None:
                self.planned_keys[(source_id, key)] = event_id
            rows.id.append(event_id)
            rows.source_id.append(source_id)
            rows.profile_id.append(profile_id)
            rows.session_id.append(session_id)
            rows.type.append(event.type)
            rows.time.append(event.time or received_at)
            rows.received_at.append(received_at)
            rows.properties.append(event.properties)
            rows.context.append(event.context)
            rows.dedup_key.append(key)
            rows.bot.append(batch.bot)
            self.pending.owner.append(index)
            stored.append(event_id)
            keys.append(key)
        return stored, duplicates, keys

    async def _cart(self, batch: IngestBatch, profile_id: str) -> None:
        """The cart change, and the outcome it ends the cart's lifecycle with, if any (a
        purchase, an emptied cart): stored as an event of the cart's source, in this transaction."""
        assert batch.cart is not None
        key = (profile_id, batch.source.id)
        if key not in self.carts:
            self.carts[key] = await self.store.cart_state(profile_id, batch.source.id)
        at = batch.meta.received_at
        state, outcome = cart_rules.step(self.carts[key], batch.cart, at)
        self.carts[key] = state
        self.pending.carts[key] = (state, at)
        if outcome is not None:
            rows = self.pending.events
            rows.id.append(event_store.uuid7())
            rows.source_id.append(batch.source.id)
            rows.profile_id.append(profile_id)
            rows.session_id.append(None)
            rows.type.append(outcome.event_type)
            rows.time.append(outcome.at)
            rows.received_at.append(at)
            rows.properties.append(outcome.properties())
            rows.context.append(dict(cart_rules.CONTEXT))
            rows.dedup_key.append(cart_rules.dedup_key(outcome.lifecycle_id))
            rows.bot.append(batch.bot)
            self.pending.owner.append(-1)

    # --- merges: rare, on the rows ----------------------------------------------------------

    async def _merge(
        self, from_id: str, into_id: str, reason: str, batch: IngestBatch, merged: list[str]
    ) -> _Profile:
        """Fold one profile into another on the rows: what was decided so far is written first,
        and the group then reads what the merge left."""
        await self._write()
        survivor = await merge_profiles(
            self.db,
            from_id=from_id,
            into_id=into_id,
            reason=reason,
            source_id=batch.source.id,
            now=batch.meta.received_at,
        )
        if from_id != survivor:
            merged.append(from_id)
        self._forget()
        live = await self._live(survivor)
        assert live is not None
        live.see(batch.meta.received_at)
        return live

    async def _explicit_merge(
        self, batch: IngestBatch, src: IdentityRef, dest: IdentityRef, reason: str
    ) -> list[str]:
        """Alias ``src`` to ``dest``: neither needs to exist yet; afterwards both name one profile."""
        now = batch.meta.received_at
        merged: list[str] = []
        dest_profile = await self._owner(dest)
        if dest_profile is None:
            dest_profile = self._new_profile(batch, made_by=-1)  # not the batch's own: its alias's
            self._plan_link(dest, dest_profile.id, now, must_win=True)
        if _barred(batch, dest_profile):
            return merged
        src_profile = await self._owner(src)
        if src_profile is None:
            self._plan_link(src, dest_profile.id, now, must_win=True)
        elif _barred(batch, src_profile):
            return merged
        elif src_profile.id != dest_profile.id:
            await self._merge(src_profile.id, dest_profile.id, reason, batch, merged)
        return merged

    def _forget(self) -> None:
        """After a merge moved rows, everything loaded may be stale: read it again on demand."""
        self.profiles.clear()
        self.identities.clear()
        self.sessions.clear()
        self.visits.clear()
        self.visit_keys.clear()
        self.carts.clear()

    # --- step 3: the write ----------------------------------------------------------------------

    async def _write(self) -> None:
        """Write everything decided so far, as sets, in an order that keeps references valid
        and takes row locks in id order."""
        pending = self.pending
        new_profiles = [p for p in self.profiles.values() if p is not None and p.new]
        if not pending and not new_profiles and not self._changed():
            return
        created = await self.store.open_sessions(
            sorted(pending.sessions.values(), key=lambda s: s.id),
            [
                NewProfile(
                    id=p.id,
                    traits=p.traits,
                    anonymous=p.anonymous,
                    visits=p.visits,
                    created_at=p.created_at,
                    updated_at=p.updated_at or p.created_at,
                    last_seen_at=max(p.created_at, p.seen_at or p.created_at),
                    protected=p.protected,
                )
                for p in sorted(new_profiles, key=lambda p: p.id)
            ],
        )
        if len(created) != len(pending.sessions):
            raise LostRace("a session this group opened was opened by another transaction")
        if pending.unlinks:
            await self.store.unlink_identities(
                [(key, profile_id) for key, profile_id in sorted(pending.unlinks.items())]
            )
        if pending.links:
            lost = await self.store.link_identities(sorted(pending.links.values(), key=lambda r: r.key))
            if lost & pending.must_win:
                raise LostRace("an identity this group linked was linked by another transaction")
        seen = {
            p.id: Seen(p.visits, p.seen_at)
            for p in sorted(self._existing(), key=lambda p: p.id)
            if p.seen_at is not None
        }
        inserted = await self.store.insert_events(pending.events, dict(sorted(pending.touched.items())), seen)
        changed = [p for p in self._existing() if p.updated_at is not None]
        if changed:
            await self.store.update_profiles(
                [
                    ProfileChange(p.id, p.traits, p.anonymous, p.protected, p.updated_at)
                    for p in sorted(changed, key=lambda p: p.id)
                    if p.updated_at is not None
                ]
            )
        if pending.carts:
            await self.store.save_carts(
                [
                    CartRow(pid, sid, cart, str(cart_rules.total(cart.items)), at)
                    for (pid, sid), (cart, at) in sorted(pending.carts.items())
                ]
            )
        await self._settle_duplicates(inserted)
        for profile in self.profiles.values():
            if profile is not None:
                profile.new = False
                profile.visits = 0
                profile.seen_at = None
                profile.updated_at = None
        for session_id in pending.sessions:
            self.sessions[session_id] = pending.sessions[session_id].profile_id
        self.pending = _Pending()

    def _existing(self) -> list[_Profile]:
        return [p for p in self.profiles.values() if p is not None and not p.new and p.merged_into is None]

    def _changed(self) -> bool:
        return any(p.seen_at is not None or p.updated_at for p in self._existing())

    async def _settle_duplicates(self, inserted: set[str]) -> None:
        """Events another transaction stored first under the same key are duplicates: their
        batches answer with the stored event's id."""
        rows = self.pending.events
        late = [
            (index, rows.source_id[i], rows.dedup_key[i], rows.id[i])
            for i, index in enumerate(self.pending.owner)
            if rows.id[i] not in inserted and index >= 0  # a generated one: its lifecycle had its outcome
        ]
        if not late:
            return
        by_source: dict[str, list[str]] = {}
        for _, source_id, key, _ in late:
            by_source.setdefault(source_id, []).append(str(key))
        found: dict[tuple[str, str], str] = {}
        for source_id, keys in by_source.items():
            for key, row in (await self.store.stored_events(source_id, keys)).items():
                found[(source_id, key)] = row[0]
        for index, source_id, key, event_id in late:
            outcome = self.outcomes[index]
            if outcome is None:  # a merge, the only write before the end, comes before any event
                raise RuntimeError(f"batch {index}'s events were written before it was decided")
            position = outcome.event_ids.index(event_id)
            del outcome.event_ids[position]
            del outcome.keys[position]
            outcome.duplicates.append(found[(source_id, str(key))])
            self.planned_keys[(source_id, str(key))] = found[(source_id, str(key))]

    def _result(self, outcome: _Outcome) -> IngestResult:
        return IngestResult(
            profile_id=outcome.profile_id,
            session_id=outcome.session_id,
            stored_event_ids=outcome.event_ids,
            duplicate_event_ids=outcome.duplicates,
            profile_created=outcome.profile_created,
            session_created=outcome.session_created,
            resolved_by=outcome.resolved_by,
            merged=outcome.merged,
            suppressed=outcome.suppressed,
        )


def _barred(batch: IngestBatch, profile: _Profile) -> bool:
    """A claim nobody verified never reaches a protected profile: it does not land on it, merge
    into it, overwrite it or learn its id (design.md, "Trust: who may claim an identity")."""
    return profile.protected and not batch.verified


def _only_repeats(batch: IngestBatch) -> bool:
    """Every event has a dedup key and nothing else is asked: a resend can be answered alone."""
    return (
        bool(batch.events)
        and all(e.dedup_key is not None for e in batch.events)
        and not (batch.traits or batch.merges or batch.unlink or batch.cart)
    )


def _visit_time(batch: IngestBatch) -> datetime:
    """When this batch happened: its first event's time for derived visits, else receipt."""
    if batch.visit_key is not None:
        for event in batch.events:
            if event.time is not None:
                return event.time
    return batch.meta.received_at


def identity_chain_limit() -> int:
    """Merges compress chains to one hop, so a longer walk means something is badly wrong."""
    return 32
