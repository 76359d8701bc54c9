"""Read queries across people: live profiles by condition, events across profiles, a profile's visits.

Every list is keyset-paginated: the page is ordered by a sort key and the row id (the tie
breaker), and the cursor is the last row's ``[key, id]``, so that a page never repeats or
skips a row when many rows share a key. Merged profiles (``merged_into`` set) never appear:
their identities, sessions and events moved to the survivor when they were merged.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway import jsonutil
from trackway.db.conditions import compile_condition
from trackway.db.models import events, identities, profiles, sessions
from trackway.db.queries import _EVENT_PAGE_COLUMNS, event_view

#: ``sort=`` of people lists: the column each names.
PEOPLE_SORTS = {
    "last_seen_at": profiles.c.last_seen_at,
    "created_at": profiles.c.created_at,
    "visits": profiles.c.visits,
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- cursors ------------------------------------------------------------------------------------


def encode_cursor(*values: Any) -> str:
    raw = jsonutil.dumps(list(values))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, kinds: tuple[type, ...]) -> list[Any]:
    """The values of a cursor this server made, of these kinds (``datetime`` from ISO text).

    Raises ``ValueError`` for anything else: not base64, not JSON, another length, a time
    without its zone, an id no column holds.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = jsonutil.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("a cursor of another list")
        out: list[Any] = []
        for value, kind in zip(values, kinds, strict=True):
            if kind is datetime:
                if not isinstance(value, str):
                    raise ValueError("not a time")
                time = datetime.fromisoformat(value)
                if time.tzinfo is None:
                    raise ValueError("a cursor's time has its zone")
                out.append(time.astimezone(UTC))
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
                    raise ValueError("not an integer")
                out.append(value)
            else:
                if not isinstance(value, str) or len(value) > 255 or "\x00" in value:
                    raise ValueError("not an id")
                value.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, a ValueError
                out.append(value)
        return out
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise ValueError("invalid cursor") from exc


def decode_people_cursor(cursor: str, *, sort: str, descending: bool) -> tuple[Any, str]:
    """``(key, id)`` of a people cursor made for this sort and order; ``ValueError`` otherwise."""
    key_kind: type = int if sort == "visits" else datetime
    made_for, order, key, last_id = decode_cursor(cursor, kinds=(str, str, key_kind, str))
    if made_for != sort or order != ("desc" if descending else "asc"):
        raise ValueError("a cursor of another order")
    return key, last_id


def _after(key: Any, id_column: Any, last_key: Any, last_id: str, descending: bool) -> ColumnElement[bool]:
    """Rows after ``(last_key, last_id)`` in the page order."""
    if descending:
        return or_(key < last_key, and_(key == last_key, id_column < last_id))
    return or_(key > last_key, and_(key == last_key, id_column > last_id))


def _ordered(stmt: Select[Any], key: Any, id_column: Any, descending: bool) -> Select[Any]:
    if descending:
        return stmt.order_by(key.desc(), id_column.desc())
    return stmt.order_by(key, id_column)


# -- people -------------------------------------------------------------------------------------


@dataclass(slots=True)
class PeopleFilter:
    """What a people list or count keeps; every part optional. ``condition`` is a validated tree."""

    condition: dict[str, Any] | None = None
    #: Profiles with an event, a visit or a source-local identity in this source.
    source: str | None = None
    #: ``(kind, value, scope)``; scope ``None``: any scope.
    identity: tuple[str, str, str | None] | None = None
    last_seen_after: datetime | None = None
    last_seen_before: datetime | None = None
    #: Bots' events count in the condition's event leaves too (left out by default).
    include_bots: bool = False


def people_where(db: AsyncConnection, people: PeopleFilter, now: datetime) -> list[ColumnElement[bool]]:
    """The WHERE of a people query: live profiles that pass every part of the filter."""
    where: list[ColumnElement[bool]] = [profiles.c.merged_into.is_(None)]
    if people.source is not None:
        where.append(
            or_(
                exists().where(events.c.profile_id == profiles.c.id, events.c.source_id == people.source),
                exists().where(sessions.c.profile_id == profiles.c.id, sessions.c.source_id == people.source),
                exists().where(identities.c.profile_id == profiles.c.id, identities.c.scope == people.source),
            )
        )
    if people.identity is not None:
        kind, value, scope = people.identity
        match = [
            identities.c.profile_id == profiles.c.id,
            identities.c.kind == kind,
            identities.c.value == value,
        ]
        if scope is not None:
            match.append(identities.c.scope == scope)
        where.append(exists().where(*match))
    if people.last_seen_after is not None:
        where.append(profiles.c.last_seen_at >= people.last_seen_after)
    if people.last_seen_before is not None:
        where.append(profiles.c.last_seen_at < people.last_seen_before)
    if people.condition is not None:
        where.append(
            compile_condition(people.condition, db.dialect.name, now, include_bots=people.include_bots)
        )
    return where


async def count_people(db: AsyncConnection, people: PeopleFilter, now: datetime) -> int:
    stmt = select(func.count()).select_from(profiles).where(*people_where(db, people, now))
    return int((await db.execute(stmt)).scalar_one())


async def list_people(
    db: AsyncConnection,
    people: PeopleFilter,
    *,
    now: datetime,
    sort: str = "last_seen_at",
    descending: bool = True,
    limit: int = 100,
    after: tuple[Any, str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of live profiles, and the cursor of the next one: ``[sort, order, key, id]`` of
    the last row (a cursor of another order is refused, see ``decode_people_cursor``)."""
    key = PEOPLE_SORTS[sort]
    stmt = select(profiles).where(*people_where(db, people, now))
    if after is not None:
        stmt = stmt.where(_after(key, profiles.c.id, after[0], after[1], descending))
    rows = (await db.execute(_ordered(stmt, key, profiles.c.id, descending).limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        last_key = getattr(last, sort)
        key_value = last_key.isoformat() if isinstance(last_key, datetime) else last_key
        next_cursor = encode_cursor(sort, "desc" if descending else "asc", key_value, last.id)
    by_profile: dict[str, list[dict[str, Any]]] = {row.id: [] for row in page}
    if page:
        idents = await db.execute(
            select(identities.c.profile_id, identities.c.kind, identities.c.value, identities.c.scope)
            .where(identities.c.profile_id.in_(list(by_profile)))
            .order_by(identities.c.created_at, identities.c.kind, identities.c.value)
        )
        for ident in idents:
            by_profile[ident.profile_id].append(
                {"kind": ident.kind, "value": ident.value, "scope": ident.scope or None}
            )
    items = [
        {
            "id": row.id,
            "traits": row.traits,
            "anonymous": row.anonymous,
            "visits": row.visits,
            "created_at": _iso(row.created_at),
            "last_seen_at": _iso(row.last_seen_at),
            "identities": by_profile[row.id],
        }
        for row in page
    ]
    return items, next_cursor


# -- events and sessions ------------------------------------------------------------------------


@dataclass(slots=True)
class EventFilter:
    source: str | None = None
    type: str | None = None
    #: A live profile id (the caller follows merges).
    profile_id: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


async def list_events(
    db: AsyncConnection,
    wanted: EventFilter,
    *,
    descending: bool = True,
    limit: int = 100,
    after: tuple[datetime, str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of events across profiles by time (newest first by default), and the next cursor."""
    where: list[ColumnElement[bool]] = []
    if wanted.source is not None:
        where.append(events.c.source_id == wanted.source)
    if wanted.type is not None:
        where.append(events.c.type == wanted.type)
    if wanted.profile_id is not None:
        where.append(events.c.profile_id == wanted.profile_id)
    if wanted.time_from is not None:
        where.append(events.c.time >= wanted.time_from)
    if wanted.time_to is not None:
        where.append(events.c.time < wanted.time_to)
    if after is not None:
        where.append(_after(events.c.time, events.c.id, after[0], after[1], descending))
    stmt = select(*_EVENT_PAGE_COLUMNS, events.c.profile_id).where(*where)
    rows = (await db.execute(_ordered(stmt, events.c.time, events.c.id, descending).limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].time.isoformat(), page[-1].id) if len(rows) > limit else None
    return [{**event_view(row), "profile_id": row.profile_id} for row in page], next_cursor


async def profile_sessions(
    db: AsyncConnection, profile_id: str, *, limit: int, after: tuple[datetime, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the profile's visits, newest first (by start), and the next cursor."""
    stmt = select(sessions).where(sessions.c.profile_id == profile_id)
    if after is not None:
        stmt = stmt.where(_after(sessions.c.started_at, sessions.c.id, after[0], after[1], True))
    stmt = _ordered(stmt, sessions.c.started_at, sessions.c.id, True).limit(limit + 1)
    rows = (await db.execute(stmt)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].started_at.isoformat(), page[-1].id) if len(rows) > limit else None
    items = [
        {
            "id": row.id,
            "source_id": row.source_id,
            "client_key": row.client_key,
            "started_at": _iso(row.started_at),
            "last_event_at": _iso(row.last_event_at),
            "event_count": row.event_count,
            "context": row.context,
        }
        for row in page
    ]
    return items, next_cursor
