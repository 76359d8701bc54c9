"""Store events (skipping duplicates by ``dedup_key``) and apply trait patches."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from trackway.core.batch import IngestBatch, TraitsPatch

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
