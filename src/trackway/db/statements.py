"""The per-batch steps' statements, built once with bind parameters instead of per call.

Building an SQLAlchemy Core statement is Python work: coercing every clause, then
computing the cache key that finds its compiled form. For the per-batch steps (identities,
derived visits, merges: Tracify and Tracktor requests) that was the larger part of their
CPU, about 10 coercions per statement and 30 statements per Tracify request (cProfile).
A statement built once keeps its cache key, so each call only binds its values.
Statements that differ between SQLite and PostgreSQL (``INSERT ... ON CONFLICT``) are
built once per dialect.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.models import events, identities, profiles, sessions
from trackway.db.sql import greatest, insert_ignore

CREATE_PROFILE = insert(profiles)
INSERT_EVENTS = insert(events)

#: The live-or-merged state of one profile.
MERGED_INTO = select(profiles.c.merged_into).where(profiles.c.id == bindparam("id"))

#: Lock a live profile for this transaction (``FOR NO KEY UPDATE``) and mark it seen.
LOCK_LIVE_PROFILE = (
    update(profiles)
    .where(profiles.c.id == bindparam("pid"), profiles.c.merged_into.is_(None))
    .values(
        last_seen_at=greatest(profiles.c.last_seen_at, bindparam("at", type_=profiles.c.last_seen_at.type))
    )
    .returning(profiles.c.id, profiles.c.traits, profiles.c.anonymous)
)

IDENTITY_OWNER = select(identities.c.profile_id).where(
    identities.c.scope == bindparam("scope"),
    identities.c.kind == bindparam("kind"),
    identities.c.value == bindparam("value"),
)

#: Identities by key with their profile's ``merged_into``, on PostgreSQL: three arrays, one
#: statement text whatever their count.
PG_IDENTITY_OWNERS = text(
    """
    SELECT i.scope, i.kind, i.value, i.profile_id, p.merged_into FROM identities i
    JOIN unnest(CAST(:scopes AS varchar[]), CAST(:kinds AS varchar[]), CAST(:keys AS varchar[]))
         AS k(scope, kind, value)
      ON i.scope = k.scope AND i.kind = k.kind AND i.value = k.value
    JOIN profiles p ON p.id = i.profile_id
    """
)

#: Identities by key elsewhere (SQLite): a row-value ``IN`` list.
IDENTITY_OWNERS = (
    select(
        identities.c.scope,
        identities.c.kind,
        identities.c.value,
        identities.c.profile_id,
        profiles.c.merged_into,
    )
    .join(profiles, profiles.c.id == identities.c.profile_id)
    .where(
        tuple_(identities.c.scope, identities.c.kind, identities.c.value).in_(
            bindparam("refs", expanding=True)
        )
    )
)

#: Continue a visit: move its clock, add to its count; no row: the visit does not exist.
TOUCH_SESSION = (
    update(sessions)
    .where(sessions.c.id == bindparam("sid"))
    .values(
        last_event_at=greatest(
            sessions.c.last_event_at, bindparam("at", type_=sessions.c.last_event_at.type)
        ),
        event_count=sessions.c.event_count + bindparam("n", type_=sessions.c.event_count.type),
    )
    .returning(sessions.c.id)
)

SESSION_OWNER = select(sessions.c.profile_id).where(sessions.c.id == bindparam("id"))

#: The last visit a person's key started (the visits of one key follow each other).
LATEST_VISIT = (
    select(sessions.c.id, sessions.c.last_event_at)
    .where(
        sessions.c.source_id == bindparam("source_id"),
        sessions.c.visit_key == bindparam("visit_key"),
        sessions.c.profile_id == bindparam("profile_id"),
    )
    .order_by(sessions.c.started_at.desc())
    .limit(1)
)

STORED_EVENT_IDS = select(events.c.dedup_key, events.c.id).where(
    events.c.source_id == bindparam("source_id"),
    events.c.dedup_key.in_(bindparam("keys", expanding=True)),
)

#: Stored events by dedup key with the profile each belongs to (a resent batch's answer).
STORED_EVENTS = select(events.c.dedup_key, events.c.id, events.c.profile_id).where(
    events.c.source_id == bindparam("source_id"),
    events.c.dedup_key.in_(bindparam("keys", expanding=True)),
)

DELETE_PROFILES = delete(profiles).where(profiles.c.id.in_(bindparam("ids", expanding=True)))


@functools.cache
def link_identity(dialect: str) -> Any:
    """``INSERT`` an identity unless its key exists; returns a row only when it inserted."""
    return insert_ignore(dialect, identities, ["scope", "kind", "value"]).returning(identities.c.profile_id)


@functools.cache
def claim_session(dialect: str) -> Any:
    """``INSERT`` a session unless its client key exists; returns a row only when it inserted."""
    return insert_ignore(dialect, sessions, ["source_id", "client_key"]).returning(sessions.c.id)


@functools.cache
def insert_events(dialect: str) -> Any:
    """``INSERT`` events, skipping stored dedup keys; returns the ids it inserted."""
    return insert_ignore(dialect, events, ["source_id", "dedup_key"]).returning(events.c.id)


class DriverStatements:
    """Base of the bulk stores (``db/bulk_pg.py``, ``db/bulk_sqlite.py``).

    Their hot statements go on the driver's own connection under ``db`` (asyncpg's or
    aiosqlite's), skipping SQLAlchemy, inside the transaction SQLAlchemy began. The two
    rare ones (a duplicate's stored id, a profile left unused by a lost race) go through
    SQLAlchemy with the statements above, the same ones the per-batch steps use.
    """

    def __init__(self, db: AsyncConnection) -> None:
        self._db = db
        self._conn: Any = None

    async def _driver(self) -> Any:
        if self._conn is None:
            conn = (await self._db.get_raw_connection()).driver_connection
            inside = conn.is_in_transaction() if hasattr(conn, "is_in_transaction") else conn.in_transaction
            if not inside:
                raise RuntimeError("the bulk path writes only inside the group's transaction")
            self._conn = conn
        return self._conn

    async def delete_profiles(self, ids: list[str]) -> None:
        await self._db.execute(DELETE_PROFILES, {"ids": ids})

    async def stored_event_ids(self, source_id: str, keys: list[str]) -> dict[str, str]:
        rows = await self._db.execute(STORED_EVENT_IDS, {"source_id": source_id, "keys": keys})
        return {row.dedup_key: row.id for row in rows}
