"""Store events (skipping duplicates by ``dedup_key``) and apply trait patches."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import EventIn, IngestBatch, TraitsPatch
from trackway.db import statements

_last_stamp = 0


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7), monotonic within this process.

    Events of one batch share their receive time; ordering by ``(time, id)`` then keeps
    the order they were sent in, and new ids land at the right edge of the index.
    """
    global _last_stamp
    nanos = time.time_ns()
    stamp = (nanos // 1_000_000) << 12 | (nanos % 1_000_000) * 4096 // 1_000_000
    if stamp <= _last_stamp:
        stamp = _last_stamp + 1
    _last_stamp = stamp
    value = (stamp >> 12) << 80 | 0x7 << 76 | (stamp & 0xFFF) << 64 | 0b10 << 62 | random.getrandbits(62)
    return str(uuid.UUID(int=value))


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

    A duplicate's id is the id of the event stored earlier under the same key; a key
    repeated inside the batch is a duplicate too, only its first event is kept.
    """
    rows: list[dict[str, Any]] = []
    first_by_key: dict[str, str] = {}
    repeated: list[str] = []
    for event in batch_events:
        if event.dedup_key is not None and event.dedup_key in first_by_key:
            repeated.append(event.dedup_key)
            continue
        event_id = uuid7()
        if event.dedup_key is not None:
            first_by_key[event.dedup_key] = event_id
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
        return [], []
    if not first_by_key:
        await db.execute(statements.INSERT_EVENTS, rows)
        return [row["id"] for row in rows], []
    inserted = set((await db.execute(statements.insert_events(dialect), rows)).scalars())
    stored = [row["id"] for row in rows if row["id"] in inserted]
    if len(inserted) == len(rows) and not repeated:
        return stored, []
    # Keys that were stored before (or earlier in this batch) answer with the stored event's id.
    existing = {key: first_by_key[key] for key in first_by_key if first_by_key[key] in inserted}
    missing = [row["dedup_key"] for row in rows if row["id"] not in inserted]
    if missing:
        params = {"source_id": source_id, "keys": missing}
        found = await db.execute(statements.STORED_EVENT_IDS, params)
        existing.update({row.dedup_key: row.id for row in found})
    duplicates = [existing[row["dedup_key"]] for row in rows if row["id"] not in inserted]
    duplicates.extend(existing[key] for key in repeated)
    return stored, duplicates


def expected_count(batch_events: list[EventIn]) -> int:
    """Events a batch will store unless some are duplicates of events stored earlier."""
    keys = [e.dedup_key for e in batch_events if e.dedup_key is not None]
    return len(batch_events) - (len(keys) - len(set(keys)))


def add_request_context(batch: IngestBatch) -> None:
    """With no visit to hold the request's metadata (a backend's batch), each event keeps it."""
    if not batch.events:
        return
    request = batch.meta.as_context()
    for event in batch.events:
        event.context = {**event.context, "request": request}


def apply_traits(traits: dict[str, Any], patch: TraitsPatch) -> dict[str, Any]:
    """Keys named in ``set`` overwrite, keys in ``remove`` go, everything else stays."""
    merged = {**traits, **patch.set}
    for key in patch.remove:
        merged.pop(key, None)
    return merged
