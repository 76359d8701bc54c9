"""Erase a person (GDPR art. 17, CCPA): the request, the job that does it, the audit it leaves.

``request_erasure`` stores a ``pending`` erasure naming the person's profile (by its id or
by an identity) and returns at once (the API answers 202). The job (``run_pass``: every
process runs it, ``trackway erasures run`` runs one pass) claims the oldest erasure not done,
one transaction at a time (``db/erasure.claim_next``: ``SKIP LOCKED``), so any number of
processes can work and a restart loses nothing:

1. while the person has events, delete a batch of them (``BATCH``: 100 on SQLite, 500 on
   PostgreSQL) and commit: a person with millions of events never holds a long transaction;
2. then, in one transaction: lock the person's profiles (``db/erasure.lock_person``), write
   the suppressions (when asked), delete what is left of their events, their visits,
   identities, carts, merge records and the profiles themselves (traits are on the rows),
   and close the erasure: it keeps the counts and the erased keys' hashes, and forgets the
   profile id.

The person is the profile, the profile it was merged into, and every profile merged into
either (``db/erasure.person``). An event for them that arrives while the erasure runs is
erased with it (it was committed before the last transaction took its locks) or, after it,
finds the person gone: suppressed when asked, else the start of a new profile with none of
the erased data (``core/suppression.py``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway import jsonutil
from trackway.core.identity import email_sha256
from trackway.core.ingest import in_transaction
from trackway.core.uow import UnitOfWork
from trackway.db import erasure as store
from trackway.db.models import carts, events, identities, profile_merges, profiles, sessions
from trackway.errors import NotFound, ValidationFailed

#: Events deleted in one transaction, by database (on SQLite it holds the one write lock).
BATCH = {"sqlite": 100, "postgresql": 500}
#: Transactions one pass runs at most before it lets the next tick go on.
MAX_STEPS = 10_000
#: Kinds that are global (no source scope).
GLOBAL_KINDS = frozenset({"email_sha256"})


def token_label(token: str | None) -> str:
    """Who asked, without the secret: ``token:`` and the first 16 hex digits of its SHA-256."""
    if not token:
        return "cli"
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def parse_identity(identity: str, source: str | None) -> tuple[str, str, str | None]:
    """``kind:value`` as ``(kind, value, scope)``; ``email:`` is hashed into ``email_sha256``.

    ``scope`` is ``""`` for global kinds and the ``source`` for the others (``None``: any
    source). A malformed one is a 422 naming ``identity``.
    """
    kind, sep, value = identity.partition(":")
    if not sep or not kind or not value or len(kind) > 32:
        raise ValidationFailed.field(("body", "identity"), "expected kind:value, e.g. email:ann@example.com")
    if kind == "email":
        if "@" not in value:
            raise ValidationFailed.field(("body", "identity"), "email: needs an email address")
        return "email_sha256", email_sha256(value), ""
    if kind in GLOBAL_KINDS:
        return kind, value.strip().lower(), ""
    if len(value) > 255:
        raise ValidationFailed.field(("body", "identity"), "a value is at most 255 characters")
    return kind, value, source


async def _profile_of_identity(db: AsyncConnection, kind: str, value: str, scope: str | None) -> str:
    statement = select(identities.c.profile_id).where(identities.c.kind == kind, identities.c.value == value)
    if scope is not None:
        statement = statement.where(identities.c.scope == scope)
    owners = sorted(set((await db.execute(statement)).scalars()))
    if not owners:
        raise NotFound("no profile holds this identity")
    if len(owners) > 1:
        raise ValidationFailed.field(
            ("body", "source"), "this identity names people in several sources: give source"
        )
    return owners[0]


async def request_erasure(
    uow: UnitOfWork,
    *,
    profile_id: str | None = None,
    identity: str | None = None,
    source: str | None = None,
    suppress: bool = False,
    requested_by: str = "cli",
) -> dict[str, Any]:
    """Store a pending erasure of the person named by ``profile_id`` or ``identity``; its view.

    Unknown profile or identity: ``NotFound`` (a 404), nothing stored.
    """
    if (profile_id is None) == (identity is None):
        raise ValidationFailed.field(("body",), "give either profile_id or identity")
    now = datetime.now(UTC)
    async with uow.transaction() as db:
        if profile_id is not None:
            if not await store.person(db, profile_id):
                raise NotFound(f"no profile {profile_id!r}")
            target, subject = profile_id, "profile"
            asked = ("", store.PROFILE_KIND, profile_id)
        else:
            assert identity is not None
            kind, value, scope = parse_identity(identity, source)
            target, subject = await _profile_of_identity(db, kind, value, scope), "identity"
            asked = (scope or "", kind, value)
        row = {
            "id": str(uuid.uuid4()),
            "state": "pending",
            "suppress": suppress,
            "requested_at": now,
            "requested_by": requested_by,
            "subject": subject,
            "target_profile_id": target,
            "key_hashes": [_hashed(asked)],
            "counts": {},
        }
        await store.create(db, row)
    return view(row)


def _hashed(key: tuple[str, str, str]) -> dict[str, str]:
    return {"kind": key[1], "scope": key[0], "hash": store.key_hash(*key)}


def view(row: Any) -> dict[str, Any]:
    """An erasure as the API shows it: never the profile id, which is personal until erased."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    counts = {
        name: int(data["counts"].get(name, 0))
        for name in ("profiles", "identities", "sessions", "events", "carts", "merges")
    }
    return {
        "id": data["id"],
        "state": data["state"],
        "suppress": data["suppress"],
        "subject": data["subject"],
        "requested_at": data["requested_at"].isoformat(),
        "requested_by": data["requested_by"],
        "started_at": _iso(data.get("started_at")),
        "finished_at": _iso(data.get("finished_at")),
        "key_hashes": data["key_hashes"],
        "counts": counts,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def get_erasure(uow: UnitOfWork, erasure_id: str) -> dict[str, Any]:
    async with uow.read() as db:
        row = await store.get(db, erasure_id)
    if row is None:
        raise NotFound(f"no erasure {erasure_id!r}")
    return view(row)


async def list_erasures(uow: UnitOfWork, limit: int = 100) -> list[dict[str, Any]]:
    async with uow.read() as db:
        return [view(row) for row in await store.page(db, limit)]


# --- the job -----------------------------------------------------------------------------------


async def run_once(uow: UnitOfWork, *, batch: int | None = None) -> str | None:
    """One step of the oldest erasure not done, in one transaction; its id, ``None`` if none."""
    size = batch or BATCH.get(uow.dialect, 100)
    seen = await _read_before_last_step(uow, size) if uow.dialect == "sqlite" else None

    async def work(db: AsyncConnection) -> str | None:
        row = await store.claim_next(db)
        if row is None:
            return None
        now = datetime.now(UTC)
        counts: dict[str, int] = dict(row.counts or {})
        target = row.target_profile_id
        ids = await store.person(db, target) if target else []
        deleted = await store.delete_events(db, ids, size) if ids else 0
        counts["events"] = counts.get("events", 0) + deleted
        # On SQLite the last step needs the events table read first, outside the write lock.
        ready = uow.dialect != "sqlite" or (seen is not None and seen[0] == row.id)
        if deleted == size or not ready:  # more to come: commit this batch, the next goes on
            await store.save(
                db, row.id, {"state": "running", "started_at": row.started_at or now, "counts": counts}
            )
            return str(row.id)
        erased: list[tuple[str, str, str]] = []
        ids = await store.lock_person(db, target) if target else []
        if ids:
            erased = await store.strong_keys(db, ids)
            erased += [("", store.PROFILE_KIND, pid) for pid in ids]
            if row.suppress:
                await store.suppress(db, erased, row.id, now)
            for name, n in (await store.delete_person(db, ids, size, seen[1] if seen else None)).items():
                counts[name] = counts.get(name, 0) + n
        await store.save(
            db,
            row.id,
            {
                "state": "done",
                "started_at": row.started_at or now,
                "finished_at": now,
                "target_profile_id": None,
                "counts": counts,
                "key_hashes": [*row.key_hashes, *(_hashed(key) for key in erased)],
            },
        )
        return str(row.id)

    return await in_transaction(uow, work)


async def _read_before_last_step(uow: UnitOfWork, size: int) -> tuple[str, tuple[list[str], int]] | None:
    """SQLite: when the next erasure's last step is near (at most a batch of events left), read
    the other profiles' events in the person's visits on a read connection, without the write
    lock (``db/erasure.read_others_in_visits``); ``None`` otherwise."""
    async with uow.read() as db:
        row = await store.claim_next(db)  # no lock on SQLite: a peek
        if row is None or row.target_profile_id is None:
            return None
        ids = await store.person(db, row.target_profile_id)
        if not ids:
            return str(row.id), ([], 0)
        if await store.more_events_than(db, ids, size):
            return None
        return str(row.id), await store.read_others_in_visits(db, ids)


async def run_pass(uow: UnitOfWork, *, batch: int | None = None) -> int:
    """Work on erasures until none is left undone (or other processes hold them); steps run."""
    steps = 0
    while steps < MAX_STEPS and await run_once(uow, batch=batch) is not None:
        steps += 1
    return steps


# --- suppressions ------------------------------------------------------------------------------


def suppression_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "scope": row.scope or None,
        "hash": row.key_hash,
        "erasure_id": row.erasure_id,
        "created_at": row.created_at.isoformat(),
    }


async def list_suppressions(uow: UnitOfWork, limit: int = 100) -> list[dict[str, Any]]:
    async with uow.read() as db:
        return [suppression_view(row) for row in await store.list_suppressions(db, limit)]


async def lift_suppression(uow: UnitOfWork, suppression_id: str) -> None:
    """Requests naming the key are stored again from now on. Unknown id: ``NotFound``."""
    async with uow.transaction() as db:
        if not await store.lift(db, suppression_id):
            raise NotFound(f"no suppression {suppression_id!r}")


# --- export (a subject access request) ----------------------------------------------------------

#: Rows read per statement while an export streams.
EXPORT_PAGE = 1000


async def export_person(uow: UnitOfWork, profile_id: str) -> list[str]:
    """The person's profile ids (``NotFound`` if none): checked before a response starts."""
    async with uow.read() as db:
        ids = await store.person(db, profile_id)
    if not ids:
        raise NotFound(f"no profile {profile_id!r}")
    return ids


def _row(row: Any) -> bytes:
    return jsonutil.dumps(dict(row._mapping))


async def export_chunks(uow: UnitOfWork, ids: list[str]) -> AsyncIterator[bytes]:
    """Everything stored about the person as one JSON object, in pieces: the profiles (traits
    included), identities, carts, merge records, then their visits and events a page at a time."""
    async with uow.read() as db:
        rows = (
            await db.execute(select(profiles).where(profiles.c.id.in_(ids)).order_by(profiles.c.id))
        ).all()
        live = next((row.id for row in rows if row.merged_into is None), ids[0])
        yield b'{"profile_id":' + jsonutil.dumps(live)
        yield b',"exported_at":' + jsonutil.dumps(datetime.now(UTC))
        yield b',"profiles":[' + b",".join(_row(row) for row in rows) + b"]"
        for name, statement in (
            ("identities", select(identities).where(identities.c.profile_id.in_(ids))),
            ("carts", select(carts).where(carts.c.profile_id.in_(ids))),
            (
                "merges",
                select(profile_merges).where(
                    profile_merges.c.into_profile_id.in_(ids) | profile_merges.c.from_profile_id.in_(ids)
                ),
            ),
        ):
            found = (await db.execute(statement)).all()
            yield f',"{name}":['.encode() + b",".join(_row(row) for row in found) + b"]"
        yield b',"sessions":['
        first = True
        async for page in _pages(db, sessions, ids, (sessions.c.id,)):
            yield (b"" if first else b",") + b",".join(_row(row) for row in page)
            first = False
        yield b'],"events":['
        first = True
        for pid in ids:  # one profile at a time: its events in (time, id) order, off the index
            async for page in _pages(db, events, [pid], (events.c.time, events.c.id)):
                yield (b"" if first else b",") + b",".join(_row(row) for row in page)
                first = False
        yield b"]"
        yield b"}"


async def _pages(
    db: AsyncConnection, table: Any, ids: list[str], order: tuple[Any, ...]
) -> AsyncIterator[list[Any]]:
    """The rows of ``table`` whose ``profile_id`` is in ``ids``, a page at a time, by ``order``
    (keyset: each page starts after the last row of the one before)."""
    after: tuple[Any, ...] | None = None
    while True:
        statement = select(table).where(table.c.profile_id.in_(ids))
        if after is not None:
            statement = statement.where(
                tuple_(*order) > tuple_(*(literal(v, c.type) for v, c in zip(after, order, strict=True)))
            )
        page = (await db.execute(statement.order_by(*order).limit(EXPORT_PAGE))).all()
        if page:
            yield page
            after = tuple(getattr(page[-1], column.name) for column in order)
        if len(page) < EXPORT_PAGE:
            return
