"""Row shapes that the core hands to the database layer's bulk stores.

They live here, under ``db/``, so that ``db/bulk_pg.py`` and ``db/bulk_sqlite.py`` need nothing
from the core: the core decides what to write, these carry it, the stores only write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class EventColumns:
    """The group's event rows, one list per column: what both stores send as they are."""

    id: list[str] = field(default_factory=list)
    source_id: list[str] = field(default_factory=list)
    profile_id: list[str] = field(default_factory=list)
    session_id: list[str | None] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    time: list[datetime] = field(default_factory=list)
    received_at: list[datetime] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)
    context: list[dict[str, Any]] = field(default_factory=list)
    dedup_key: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True, slots=True)
class NewSession:
    id: str
    source_id: str
    client_key: str
    profile_id: str
    started_at: datetime
    context: dict[str, Any]


@dataclass(slots=True)
class Seen:
    """A profile a group writes to: visits it opened for it, and its latest batch's time."""

    visits: int
    at: datetime
