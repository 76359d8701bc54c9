"""The statements of the write path (``core/group_write.py``), for one group in its transaction.

``GroupStore`` is what the core asks for; ``store_for`` gives the one for the database. The
statements every group sends (load the profiles and sessions, open sessions with their new
profiles, insert events and move the counters) are each database's own, on the driver's
connection (``db/group_pg.py``, ``db/group_sqlite.py``). The ones only groups naming people by
identity, changing traits or carts send are shared here, through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, delete, select, text, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db import statements
from trackway.db.models import carts, events, identities, profiles, sessions, sources
from trackway.db.rows import (
    CartRow,
    CartState,
    EventColumns,
    IdentityLink,
    NewProfile,
    NewSession,
    ProfileChange,
    ProfileRow,
    Seen,
)
from trackway.db.sql import upsert

Key = tuple[str, str, str]
T = TypeVar("T")


class GroupStore(Protocol):
    """The statements of one group, in the open transaction."""

    async def load_profiles_and_sessions(
        self, profile_ids: list[str], session_ids: list[str], *, traits: bool = True
    ) -> tuple[dict[str, ProfileRow], dict[str, str]]:
        """The profiles among ``profile_ids`` (live or merged), locked ``FOR NO KEY UPDATE`` in
        id order until the commit, with their traits only if ``traits`` (decoding them is most
        of the statement's cost, and a group of returning visitors changes none); and the
        owner of each of ``session_ids`` that exists."""
        ...

    async def identity_owners(self, keys: list[Key]) -> dict[Key, str]:
        """The profile each known identity points at (maybe merged since)."""
        ...

    async def latest_visits(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str, str], tuple[str, datetime]]:
        """For each ``(source, visit key)``: each profile's latest derived visit, its id and clock."""
        ...

    async def stored_events(
        self, source_id: str, keys: list[str]
    ) -> dict[str, tuple[str, str | None, str | None]]:
        """Stored events by dedup key: their id, profile and session."""
        ...

    async def cart_state(self, profile_id: str, source_id: str) -> CartState:
        """The profile's cart in the source with its lifecycle, and the source's
        ``cart_abandon_after`` (the caller holds the profile locked: the cart cannot change)."""
        ...

    async def open_sessions(self, new: list[NewSession], fresh: list[NewProfile]) -> set[str]:
        """Make the ``fresh`` profiles and insert the sessions not opened meanwhile; the ids opened."""
        ...

    async def unlink_identities(self, keys: list[tuple[Key, str]]) -> None:
        """Delete each identity from the profile named with it (only from that one)."""
        ...

    async def link_identities(self, links: list[IdentityLink]) -> set[Key]:
        """Insert the identities not held yet; the keys another transaction holds already."""
        ...

    async def insert_events(
        self, rows: EventColumns, sessions: dict[str, datetime], seen: dict[str, Seen]
    ) -> set[str]:
        """Store the rows, skipping known dedup keys; then move each of ``sessions``' counts by
        the events stored in it and its ``last_event_at`` to the time given (unless later
        already), and each ``seen`` profile's ``last_seen_at`` likewise and its visits up by
        the number given, locking rows in id order; the ids inserted."""
        ...

    async def update_profiles(self, rows: list[ProfileChange]) -> None:
        """Set traits, flags and ``updated_at`` of profiles this group holds locked."""
        ...

    async def save_carts(self, rows: list[CartRow]) -> None:
        """Upsert each profile's cart in a source, with its lifecycle."""
        ...


def store_for(db: AsyncConnection, dialect: str) -> GroupStore:
    from trackway.db.group_pg import PgGroupStore
    from trackway.db.group_sqlite import SqliteGroupStore

    return PgGroupStore(db) if dialect == "postgresql" else SqliteGroupStore(db)


_LATEST_VISIT_ROWS = (
    select(
        sessions.c.source_id,
        sessions.c.visit_key,
        sessions.c.profile_id,
        sessions.c.id,
        sessions.c.last_event_at,
        sessions.c.started_at,
    )
    .where(tuple_(sessions.c.source_id, sessions.c.visit_key).in_(bindparam("keys", expanding=True)))
    .order_by(sessions.c.started_at.desc())
)

_STORED = select(events.c.dedup_key, events.c.id, events.c.profile_id, events.c.session_id).where(
    events.c.source_id == bindparam("source_id"),
    events.c.dedup_key.in_(bindparam("keys", expanding=True)),
)

_CART = (
    select(
        sources.c.cart_abandon_after,
        carts.c["items"],
        carts.c.lifecycle_id,
        carts.c.lifecycle_started_at,
        carts.c.outcome,
        carts.c.outcome_at,
        carts.c.outcome_due_at,
    )
    .select_from(
        sources.outerjoin(
            carts, and_(carts.c.source_id == sources.c.id, carts.c.profile_id == bindparam("profile_id"))
        )
    )
    .where(sources.c.id == bindparam("source_id"))
)
#: A source's ``cart_abandon_after`` when it cannot be read (no such source: never for a batch).
DEFAULT_ABANDON_AFTER = 3600

_UNLINK = delete(identities).where(
    identities.c.scope == bindparam("u_scope"),
    identities.c.kind == bindparam("u_kind"),
    identities.c.value == bindparam("u_value"),
    identities.c.profile_id == bindparam("u_profile"),
)

_UPDATE_PROFILE = (
    update(profiles)
    .where(profiles.c.id == bindparam("p_id"))
    .values(
        traits=bindparam("p_traits", type_=profiles.c.traits.type),
        anonymous=bindparam("p_anonymous"),
        protected=bindparam("p_protected"),
        updated_at=bindparam("p_updated_at", type_=profiles.c.updated_at.type),
    )
)


_KEY = ("scope", "kind", "value")
#: Five values a row, well under SQLite's 32,766 a statement.
_LINKS_PER_STATEMENT = 2000
#: Up to three values a key.
_KEYS_PER_STATEMENT = 5000


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in slices of at most ``size``: statements with a bound value per item stay
    under SQLite's limit (PostgreSQL's statements here take arrays, one slice)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: Identities linked in one statement of fixed text on PostgreSQL, in key order (so two groups
#: linking the same keys queue on them in one order); the ones inserted come back.
_PG_LINK = text(
    """
    INSERT INTO identities (scope, kind, value, profile_id, created_at)
    SELECT scope, kind, value, profile_id, created_at
    FROM unnest(CAST(:scopes AS varchar[]), CAST(:kinds AS varchar[]), CAST(:keys AS varchar[]),
                CAST(:profiles AS varchar[]), CAST(:ats AS timestamptz[]))
         AS i(scope, kind, value, profile_id, created_at)
    ORDER BY scope, kind, value
    ON CONFLICT (scope, kind, value) DO NOTHING
    RETURNING scope, kind, value
    """
)


class GroupStoreBase:
    """What both stores share: the driver connection under SQLAlchemy's, and the statements
    that only groups naming people by identity, or changing traits or carts, send."""

    def __init__(self, db: AsyncConnection) -> None:
        self._db = db
        self._conn: Any = None
        self._dialect = db.dialect.name

    async def _driver(self) -> Any:
        if self._conn is None:
            conn = (await self._db.get_raw_connection()).driver_connection
            inside = conn.is_in_transaction() if hasattr(conn, "is_in_transaction") else conn.in_transaction
            if not inside:
                raise RuntimeError("the write path writes only inside the group's transaction")
            self._conn = conn
        return self._conn

    async def identity_owners(self, keys: list[Key]) -> dict[Key, str]:
        if not keys:
            return {}
        if self._dialect == "postgresql":
            params = {
                "scopes": [k[0] for k in keys],
                "kinds": [k[1] for k in keys],
                "keys": [k[2] for k in keys],
            }
            rows = (await self._db.execute(statements.PG_IDENTITY_OWNERS, params)).all()
        else:
            rows = []
            for chunk in chunks(keys, _KEYS_PER_STATEMENT):  # SQLite's bound-value limit
                rows.extend((await self._db.execute(statements.IDENTITY_OWNERS, {"refs": chunk})).all())
        return {(row.scope, row.kind, row.value): row.profile_id for row in rows}

    async def latest_visits(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str, str], tuple[str, datetime]]:
        if not keys:
            return {}
        latest: dict[tuple[str, str, str], tuple[str, datetime]] = {}
        # Newest first: the first row of each (source, key, profile) is its latest visit.
        rows = []
        for chunk in chunks(keys, _KEYS_PER_STATEMENT):
            rows.extend(await self._db.execute(_LATEST_VISIT_ROWS, {"keys": chunk}))
        rows.sort(key=lambda row: row.started_at, reverse=True)
        for row in rows:
            latest.setdefault((row.source_id, row.visit_key, row.profile_id), (row.id, row.last_event_at))
        return latest

    async def stored_events(
        self, source_id: str, keys: list[str]
    ) -> dict[str, tuple[str, str | None, str | None]]:
        if not keys:
            return {}
        found: dict[str, tuple[str, str | None, str | None]] = {}
        for chunk in chunks(keys, _KEYS_PER_STATEMENT):
            for row in await self._db.execute(_STORED, {"source_id": source_id, "keys": chunk}):
                found[row.dedup_key] = (row.id, row.profile_id, row.session_id)
        return found

    async def cart_state(self, profile_id: str, source_id: str) -> CartState:
        params = {"profile_id": profile_id, "source_id": source_id}
        row = (await self._db.execute(_CART, params)).first()
        if row is None:
            return CartState(items=[], abandon_after=DEFAULT_ABANDON_AFTER)
        return CartState.of_row(row, row.cart_abandon_after)

    async def unlink_identities(self, keys: list[tuple[Key, str]]) -> None:
        params = [
            {"u_scope": k[0], "u_kind": k[1], "u_value": k[2], "u_profile": profile_id}
            for k, profile_id in keys
        ]
        await self._db.execute(_UNLINK, params)

    async def link_identities(self, links: list[IdentityLink]) -> set[Key]:
        if not links:
            return set()
        if self._dialect == "postgresql":
            params = {
                "scopes": [link.scope for link in links],
                "kinds": [link.kind for link in links],
                "keys": [link.value for link in links],
                "profiles": [link.profile_id for link in links],
                "ats": [link.created_at for link in links],
            }
            rows = await self._db.execute(_PG_LINK, params)
            inserted = {(row.scope, row.kind, row.value) for row in rows}
        else:
            inserted = set()
            for start in range(0, len(links), _LINKS_PER_STATEMENT):  # SQLite's bound-value limit
                chunk = links[start : start + _LINKS_PER_STATEMENT]
                values = [
                    {
                        "scope": k.scope,
                        "kind": k.kind,
                        "value": k.value,
                        "profile_id": k.profile_id,
                        "created_at": k.created_at,
                    }
                    for k in chunk
                ]
                stmt = (
                    sqlite.insert(identities)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=list(_KEY))
                    .returning(identities.c.scope, identities.c.kind, identities.c.value)
                )
                inserted.update((row.scope, row.kind, row.value) for row in await self._db.execute(stmt))
        return {link.key for link in links} - inserted

    async def update_profiles(self, rows: list[ProfileChange]) -> None:
        params = [
            {
                "p_id": row.id,
                "p_traits": row.traits,
                "p_anonymous": row.anonymous,
                "p_protected": row.protected,
                "p_updated_at": row.updated_at,
            }
            for row in rows
        ]
        await self._db.execute(_UPDATE_PROFILE, params)

    async def save_carts(self, rows: list[CartRow]) -> None:
        for row in rows:  # cart calls only (InSend, Tracktor), one or two a group
            cart = row.cart
            values = {
                "items": cart.items,
                "total": row.total,
                "item_count": len(cart.items),
                "updated_at": row.at,
                "lifecycle_id": cart.lifecycle_id,
                "lifecycle_started_at": cart.lifecycle_started_at,
                "outcome": cart.outcome,
                "outcome_at": cart.outcome_at,
                "outcome_due_at": cart.outcome_due_at,
            }
            stmt = upsert(
                self._dialect,
                carts,
                {"profile_id": row.profile_id, "source_id": row.source_id, "created_at": row.at, **values},
                conflict_columns=["profile_id", "source_id"],
                update_values=values,
            )
            await self._db.execute(stmt)
