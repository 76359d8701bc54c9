"""Read-side queries for the API: profiles (following merges), their events, sessions."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway import jsonutil
from trackway.db.models import carts, events, identities, profile_merges, profiles, sessions

MAX_CHAIN = 32


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def canonical_profile_id(db: AsyncConnection, profile_id: str) -> str | None:
    """The live profile a (possibly merged) id stands for today."""
    current = profile_id
    for _ in range(MAX_CHAIN):
        row = (await db.execute(select(profiles.c.merged_into).where(profiles.c.id == current))).first()
        if row is None:
            return None
        if row[0] is None:
            return current
        current = row[0]
    return None


async def profile_view(db: AsyncConnection, profile_id: str) -> dict[str, Any] | None:
    """The canonical profile; a merged id answers with its survivor and ``requested_id``."""
    live = await canonical_profile_id(db, profile_id)
    if live is None:
        return None
    row = (await db.execute(select(profiles).where(profiles.c.id == live))).one()
    idents = (
        await db.execute(
            select(identities.c.kind, identities.c.value, identities.c.scope)
            .where(identities.c.profile_id == live)
            .order_by(identities.c.created_at, identities.c.kind)
        )
    ).all()
    merged_from = (
        await db.execute(
            select(profile_merges.c.from_profile_id)
            .where(profile_merges.c.into_profile_id == live)
            .order_by(profile_merges.c.at)
        )
    ).scalars()
    view: dict[str, Any] = {
        "id": row.id,
        "traits": row.traits,
        "anonymous": row.anonymous,
        "protected": row.protected,
        "visits": row.visits,
        "identities": [{"kind": i.kind, "value": i.value, "scope": i.scope or None} for i in idents],
        "merged_from": list(merged_from),
        "carts": await carts_of(db, live),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "last_seen_at": _iso(row.last_seen_at),
    }
    if live != profile_id:
        view["requested_id"] = profile_id
    return view


async def carts_of(db: AsyncConnection, profile_id: str) -> list[dict[str, Any]]:
    """The profile's current carts, one per source."""
    rows = (
        await db.execute(select(carts).where(carts.c.profile_id == profile_id).order_by(carts.c.source_id))
    ).all()
    return [
        {
            "source_id": row.source_id,
            "items": row._mapping["items"],
            "total": row.total,
            "item_count": row.item_count,
            "updated_at": _iso(row.updated_at),
        }
        for row in rows
    ]


async def find_profiles(
    db: AsyncConnection, *, kind: str, value: str, scope: str | None
) -> list[dict[str, Any]]:
    stmt = select(identities.c.profile_id).where(identities.c.kind == kind, identities.c.value == value)
    if scope is not None:
        stmt = stmt.where(identities.c.scope == scope)
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for profile_id in (await db.execute(stmt)).scalars():
        view = await profile_view(db, profile_id)
        if view is not None and view["id"] not in seen:
            seen.add(view["id"])
            view.pop("requested_id", None)
            found.append(view)
    return found


def encode_cursor(time: datetime, event_id: str) -> str:
    raw = jsonutil.dumps([time.isoformat(), event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ``ValueError`` for a cursor this server did not hand out.

    Only what ``encode_cursor`` makes gets through: a time with its zone (a naive one
    cannot be compared with a stored UTC time: it was a 500) and an event id that fits
    the column, without the characters no database stores.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        time_text, event_id = jsonutil.loads(raw)
        if not isinstance(time_text, str) or not isinstance(event_id, str):
            raise TypeError("a cursor is [time, event id]")
        time = datetime.fromisoformat(time_text)
        if time.tzinfo is None:
            raise ValueError("a cursor's time has its zone")
        time = time.astimezone(UTC)
        if len(event_id) > 36 or "\x00" in event_id:
            raise ValueError("not an event id")
        event_id.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, a ValueError
        return time, event_id
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise ValueError("invalid cursor") from exc


def event_view(row: Any) -> dict[str, Any]:
    """One event of a page. ``properties`` and ``context`` arrive as the database's JSON text
    and go into the response as they are (``orjson.Fragment``): decoding a page's JSON only
    to encode it again was most of a read's CPU."""
    return {
        "id": row.id,
        "type": row.type,
        "time": _iso(row.time),
        "received_at": _iso(row.received_at),
        "properties": orjson.Fragment(row.properties),
        "context": orjson.Fragment(row.context),
        "session_id": row.session_id,
        "source_id": row.source_id,
    }


#: An events page's columns, the JSON ones as text (see ``event_view``).
_EVENT_PAGE_COLUMNS = (
    events.c.id,
    events.c.type,
    events.c.time,
    events.c.received_at,
    cast(events.c.properties, Text).label("properties"),
    cast(events.c.context, Text).label("context"),
    events.c.session_id,
    events.c.source_id,
)


async def profile_events(
    db: AsyncConnection,
    profile_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the profile's events in time order (newest first if ``descending``), and the
    cursor of the next page."""
    stmt = select(*_EVENT_PAGE_COLUMNS).where(events.c.profile_id == profile_id)
    if after is not None:
        time, event_id = after
        if descending:
            stmt = stmt.where(or_(events.c.time < time, and_(events.c.time == time, events.c.id < event_id)))
        else:
            stmt = stmt.where(or_(events.c.time > time, and_(events.c.time == time, events.c.id > event_id)))
    if descending:
        stmt = stmt.order_by(events.c.time.desc(), events.c.id.desc())
    else:
        stmt = stmt.order_by(events.c.time, events.c.id)
    rows = (await db.execute(stmt.limit(limit + 1))).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1].time, page[-1].id) if len(rows) > limit else None
    return [event_view(row) for row in page], next_cursor


async def session_view(db: AsyncConnection, session_id: str) -> dict[str, Any] | None:
    row = (await db.execute(select(sessions).where(sessions.c.id == session_id))).first()
    if row is None:
        return None
    return {
        "id": row.id,
        "source_id": row.source_id,
        "client_key": row.client_key,
        "profile_id": await canonical_profile_id(db, row.profile_id) or row.profile_id,
        "started_at": _iso(row.started_at),
        "last_event_at": _iso(row.last_event_at),
        "event_count": row.event_count,
        "context": row.context,
    }
