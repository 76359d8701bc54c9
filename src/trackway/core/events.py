"""Store events (skipping duplicates by ``dedup_key``) and apply trait patches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import EventIn, TraitsPatch
from trackway.db.models import events as events_table
from trackway.db.sql import insert_ignore

_EVENT_NS = uuid.UUID("0b7f3c3e-0c55-4a39-9a0e-7c1d1d0e6f42")


def event_id_for(source_id: str, dedup_key: str) -> str:
    """A deduplicated event's id is derived from its key, so a retry learns the stored id."""
    return str(uuid.uuid5(_EVENT_NS, f"{source_id}\x00{dedup_key}"))


async def store(
    db: AsyncConnection,
    dialect: str,
    *,
    source_id: str,
    profile_id: str | None,
    session_id: str | None,
    batch_events: list[EventIn],
    received_at: datetime,
) -> tuple[list[str], list[str]]:
    """Insert the events in one statement; return ``(stored ids, duplicate ids)`` in batch order.

    A key repeated inside the batch is a duplicate too: only its first event is kept.
    """
    rows: list[dict[str, Any]] = []
    order: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for event in batch_events:
        if event.dedup_key is not None:
            event_id = event_id_for(source_id, event.dedup_key)
            if event_id in seen:
                duplicates.append(event_id)
                continue
            seen.add(event_id)
        else:
            event_id = str(uuid.uuid4())
        order.append(event_id)
        rows.append(
            {
                "id": event_id,
                "source_id": source_id,
                "profile_id": profile_id,
                "session_id": session_id,
                "type": event.type,
                "time": event.time or received_at,
                "received_at": received_at,
                "properties": event.properties,
                "context": event.context,
                "dedup_key": event.dedup_key,
            }
        )
    if not rows:
        return [], duplicates
    if not seen:
        await db.execute(insert(events_table), rows)
        return order, duplicates
    stmt = insert_ignore(dialect, events_table, ["source_id", "dedup_key"]).values(rows)
    inserted = set((await db.execute(stmt.returning(events_table.c.id))).scalars())
    stored = [event_id for event_id in order if event_id in inserted]
    duplicates.extend(event_id for event_id in order if event_id not in inserted)
    return stored, duplicates


def apply_traits(traits: dict[str, Any], patch: TraitsPatch) -> dict[str, Any]:
    """Keys named in ``set`` overwrite, keys in ``remove`` go, everything else stays."""
    merged = {**traits, **patch.set}
    for key in patch.remove:
        merged.pop(key, None)
    return merged
