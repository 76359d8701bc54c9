"""The statements of erasure and suppression (``core/erasure.py``, ``core/suppression.py``).

An erased person's keys live on only as hashes (``key_hash``): SHA-256 of scope, kind and
value. ``suppressions`` is matched by them, and an erasure's audit row keeps them.

Locks. The write path locks every profile a group names ``FOR NO KEY UPDATE`` before it
decides anything (``core/group_write.py``). The erasure's last transaction locks the
person's profiles ``FOR UPDATE`` (which conflicts with it), in id order, and only then
reads their identities, writes the suppressions and deletes the rows, all in that one
transaction. A group that holds a profile first commits first, and its rows are erased
with the rest; a group that asks for it later finds it gone once the erasure commits, and
checks the suppressions, which that same commit made visible. On SQLite the transaction
holds the database's one write lock.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.models import (
    carts,
    erasures,
    events,
    identities,
    profile_merges,
    profiles,
    sessions,
    suppressions,
)
from trackway.db.sql import insert_ignore

#: Identity kinds that may be shared by several people (a Tracify visit hash: IP and browser):
#: never suppressed, or a stranger on the same network would be silenced too.
WEAK_KINDS = frozenset({"visit_hash"})
#: The kind under which a profile id itself (the id a Tracardi tracker keeps) is suppressed.
PROFILE_KIND = "profile"

Key = tuple[str, str, str]


def key_hash(scope: str, kind: str, value: str) -> str:
    """SHA-256 of ``scope``, ``kind`` and ``value``: how an erased key is kept and matched."""
    return hashlib.sha256(f"{scope}\x1f{kind}\x1f{value}".encode()).hexdigest()


# --- the write path's check --------------------------------------------------------------------

_SUPPRESSED = select(suppressions.c.key_hash).where(
    suppressions.c.key_hash.in_(bindparam("hashes", expanding=True))
)


async def suppressed_hashes(db: AsyncConnection, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` are suppressed (a few a group: one statement)."""
    wanted = sorted(set(hashes))
    if not wanted:
        return set()
    return set((await db.execute(_SUPPRESSED, {"hashes": wanted})).scalars())


# --- the erasure's person ----------------------------------------------------------------------


async def person(db: AsyncConnection, profile_id: str) -> list[str]:
    """The profile, the one it was merged into (up the chain) and every profile merged into
    any of them, in id order; ``[]`` when the profile does not exist."""
    found: set[str] = set()
    frontier = {profile_id}
    for _ in range(64):
        rows = (
            await db.execute(
                select(profiles.c.id, profiles.c.merged_into).where(
                    or_(profiles.c.id.in_(sorted(frontier)), profiles.c.merged_into.in_(sorted(frontier)))
                )
            )
        ).all()
        existing = {row.id for row in rows}
        found |= frontier & existing
        reached = existing | {row.merged_into for row in rows if row.merged_into is not None}
        frontier = reached - found
        if not frontier:
            return sorted(found)
    raise RuntimeError(f"the merges around profile {profile_id} do not end")


async def lock_person(db: AsyncConnection, profile_id: str) -> list[str]:
    """``person``, every profile locked ``FOR UPDATE`` in id order. A merge committed while
    this waited may have added profiles: they are found and locked too, until none is new."""
    locked: set[str] = set()
    for _ in range(16):
        ids = set(await person(db, profile_id))
        if ids <= locked:
            return sorted(ids)
        await db.execute(
            select(profiles.c.id)
            .where(profiles.c.id.in_(sorted(ids - locked)))
            .order_by(profiles.c.id)
            .with_for_update()
        )
        locked |= ids
    raise RuntimeError(f"profile {profile_id} keeps being merged")


async def strong_keys(db: AsyncConnection, profile_ids: list[str]) -> list[Key]:
    """The keys of the profiles' identities that suppression covers (not the weak kinds)."""
    rows = (
        await db.execute(
            select(identities.c.scope, identities.c.kind, identities.c.value)
            .where(identities.c.profile_id.in_(profile_ids))
            .order_by(identities.c.scope, identities.c.kind, identities.c.value)
        )
    ).all()
    return [(row.scope, row.kind, row.value) for row in rows if row.kind not in WEAK_KINDS]


async def suppress(db: AsyncConnection, keys: list[Key], erasure_id: str | None, now: datetime) -> None:
    """One suppression per key; a key suppressed already keeps its row."""
    if not keys:
        return
    rows = [
        {
            "id": str(uuid.uuid4()),
            "key_hash": key_hash(*key),
            "kind": key[1],
            "scope": key[0],
            "erasure_id": erasure_id,
            "created_at": now,
        }
        for key in keys
    ]
    statement = insert_ignore(db.dialect.name, suppressions, ["key_hash"])
    for start in range(0, len(rows), 1000):  # six values a row, within SQLite's 32,766
        await db.execute(statement.values(rows[start : start + 1000]))


_EVENT_BATCH = select(events.c.id).where(events.c.profile_id.in_(bindparam("pids", expanding=True)))


async def delete_events(db: AsyncConnection, profile_ids: list[str], limit: int) -> int:
    """Delete up to ``limit`` of the profiles' events; how many (``ix_events_profile_time``)."""
    ids = list((await db.execute(_EVENT_BATCH.limit(limit), {"pids": profile_ids})).scalars())
    if ids:
        await db.execute(delete(events).where(events.c.id.in_(ids)))
    return len(ids)


def _others_in_visits(profile_ids: list[str]) -> list[Any]:
    """Events of other profiles (or none) in one of these profiles' visits."""
    person_sessions = select(sessions.c.id).where(sessions.c.profile_id.in_(profile_ids))
    return [
        events.c.session_id.in_(person_sessions),
        or_(events.c.profile_id.is_(None), events.c.profile_id.not_in(profile_ids)),
    ]


async def read_others_in_visits(db: AsyncConnection, profile_ids: list[str]) -> tuple[list[str], int]:
    """SQLite, before the last transaction, on a read connection (no write lock): the ids of
    other profiles' events in the person's visits, and the highest event ``rowid`` then. The
    last transaction looks again only at these ids and the rows inserted since (``rowid`` above
    it: a range, not a read of the table)."""
    watermark = int(
        (await db.execute(select(func.coalesce(func.max(_ROWID), 0)).select_from(events))).scalar_one()
    )
    statement = select(events.c.id).where(_ROWID <= watermark, *_others_in_visits(profile_ids))
    return list((await db.execute(statement)).scalars()), watermark


_ROWID = literal_column("events.rowid")


async def more_events_than(db: AsyncConnection, profile_ids: list[str], limit: int) -> bool:
    statement = _EVENT_BATCH.limit(limit + 1)
    return len((await db.execute(statement, {"pids": profile_ids})).all()) > limit


async def delete_person(
    db: AsyncConnection, profile_ids: list[str], batch: int, seen: tuple[list[str], int] | None = None
) -> dict[str, int]:
    """Everything else of the (locked) profiles, the profiles last; rows deleted by table.

    Another profile's events in one of these visits (a Tracardi client that changed its
    profile id mid-visit) keep their data and lose the visit: ``session_id`` is cleared.
    There is no index on ``events.session_id`` (it would slow every insert), so on PostgreSQL
    that one statement reads the events table (it locks only the rows it changes: an erasure
    is rare, ingest is not); on SQLite, where the transaction holds the one write lock, the
    table was read before it (``seen``: ``read_others_in_visits``).
    """
    counts = {"events": 0}
    while True:
        deleted = await delete_events(db, profile_ids, batch)
        counts["events"] += deleted
        if deleted < batch:
            break
    where = _others_in_visits(profile_ids)
    if seen is not None:
        found, watermark = seen
        where.append(or_(events.c.id.in_(found), _ROWID > watermark))
    await db.execute(update(events).where(*where).values(session_id=None))
    for name, table, column in (
        ("carts", carts, carts.c.profile_id),
        ("identities", identities, identities.c.profile_id),
        ("sessions", sessions, sessions.c.profile_id),
    ):
        counts[name] = (await db.execute(delete(table).where(column.in_(profile_ids)))).rowcount
    counts["merges"] = (
        await db.execute(
            delete(profile_merges).where(
                or_(
                    profile_merges.c.from_profile_id.in_(profile_ids),
                    profile_merges.c.into_profile_id.in_(profile_ids),
                )
            )
        )
    ).rowcount
    # merged_into points within the person: cleared first, so the rows go in any order.
    await db.execute(update(profiles).where(profiles.c.id.in_(profile_ids)).values(merged_into=None))
    counts["profiles"] = (await db.execute(delete(profiles).where(profiles.c.id.in_(profile_ids)))).rowcount
    return counts


# --- erasure rows ------------------------------------------------------------------------------


async def create(db: AsyncConnection, row: dict[str, Any]) -> None:
    await db.execute(insert(erasures).values(row))


async def claim_next(db: AsyncConnection) -> Any:
    """The oldest erasure not done, locked until the commit; one another transaction holds is
    skipped (``SKIP LOCKED`` on PostgreSQL; SQLite's write lock serializes the rest)."""
    statement = (
        select(erasures)
        .where(erasures.c.state != "done")
        .order_by(erasures.c.requested_at, erasures.c.id)
        .limit(1)
    )
    if db.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return (await db.execute(statement)).first()


async def save(db: AsyncConnection, erasure_id: str, values: dict[str, Any]) -> None:
    await db.execute(update(erasures).where(erasures.c.id == erasure_id).values(values))


async def get(db: AsyncConnection, erasure_id: str) -> Any:
    return (await db.execute(select(erasures).where(erasures.c.id == erasure_id))).first()


async def page(db: AsyncConnection, limit: int) -> list[Any]:
    statement = select(erasures).order_by(erasures.c.requested_at.desc(), erasures.c.id).limit(limit)
    return list((await db.execute(statement)).all())


async def list_suppressions(db: AsyncConnection, limit: int) -> list[Any]:
    statement = (
        select(suppressions).order_by(suppressions.c.created_at.desc(), suppressions.c.id).limit(limit)
    )
    return list((await db.execute(statement)).all())


async def lift(db: AsyncConnection, suppression_id: str) -> bool:
    """Delete one suppression; whether it existed."""
    result = await db.execute(delete(suppressions).where(suppressions.c.id == suppression_id))
    return bool(result.rowcount)


async def count_open(db: AsyncConnection) -> int:
    return int((await db.execute(select(func.count()).where(erasures.c.state != "done"))).scalar_one())
