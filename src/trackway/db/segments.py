"""Segments: saved conditions. Membership is never stored: it is the condition evaluated now.

A person who matches now is a member now (real time); a merged profile never is (its rows
moved to the survivor, and ``people_where`` keeps live profiles only).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.db.conditions import ConditionError, compile_condition
from trackway.db.models import profiles, segments
from trackway.db.uow import SqlUnitOfWork

log = logging.getLogger("trackway")

#: Conditions evaluated in one query by ``segments_of``.
_CHUNK = 50


def segment_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "condition": row.condition,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


async def create_segment(uow: SqlUnitOfWork, *, name: str, condition: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    values = {
        "id": str(uuid.uuid4()),
        "name": name,
        "condition": condition,
        "created_at": now,
        "updated_at": now,
    }
    async with uow.transaction() as db:
        await db.execute(segments.insert().values(**values))
        row = (await db.execute(select(segments).where(segments.c.id == values["id"]))).one()
    return segment_view(row)


async def list_segments(db: AsyncConnection) -> list[dict[str, Any]]:
    rows = await db.execute(select(segments).order_by(segments.c.created_at, segments.c.id))
    return [segment_view(row) for row in rows]


async def get_segment(db: AsyncConnection, segment_id: str) -> dict[str, Any] | None:
    row = (await db.execute(select(segments).where(segments.c.id == segment_id))).first()
    return None if row is None else segment_view(row)


async def update_segment(
    uow: SqlUnitOfWork, segment_id: str, changes: dict[str, Any]
) -> dict[str, Any] | None:
    async with uow.transaction() as db:
        if changes:
            changed = await db.execute(
                update(segments)
                .where(segments.c.id == segment_id)
                .values(**changes, updated_at=datetime.now(UTC))
            )
            if changed.rowcount == 0:
                return None
        return await get_segment(db, segment_id)


async def delete_segment(uow: SqlUnitOfWork, segment_id: str) -> bool:
    async with uow.transaction() as db:
        deleted = await db.execute(delete(segments).where(segments.c.id == segment_id))
    return bool(deleted.rowcount)


async def segments_of(db: AsyncConnection, profile_id: str, now: datetime) -> list[dict[str, str]]:
    """The segments the live profile ``profile_id`` is in now, in ``list_segments`` order.

    One query per ``_CHUNK`` segments: each condition is a column of the profile's row.
    A stored condition that no longer compiles is skipped (and logged), never a 500.
    """
    compiled: list[tuple[dict[str, str], Any]] = []
    for segment in await list_segments(db):
        try:
            expr = compile_condition(segment["condition"], db.dialect.name, now)
        except (ConditionError, TypeError, ValueError):
            log.warning("segment %s has a condition that does not compile; skipped", segment["id"])
            continue
        compiled.append(({"id": segment["id"], "name": segment["name"]}, expr))
    found: list[dict[str, str]] = []
    for start in range(0, len(compiled), _CHUNK):
        chunk = compiled[start : start + _CHUNK]
        stmt = (
            select(*(expr.label(f"s{i}") for i, (_, expr) in enumerate(chunk)))
            .select_from(profiles)
            .where(profiles.c.id == profile_id, profiles.c.merged_into.is_(None))
        )
        row = (await db.execute(stmt)).first()
        if row is None:
            return []
        found.extend(segment for (segment, _), member in zip(chunk, row, strict=True) if member)
    return found
