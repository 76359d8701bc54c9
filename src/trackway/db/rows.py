"""Row shapes that the core hands to the database layer's bulk stores.

They live here, under ``db/``, so that ``db/group_pg.py`` and ``db/group_sqlite.py`` need nothing
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
    #: Sent by a bot (``IngestBatch.bot``): left out of the read side's counts unless asked.
    bot: list[bool] = field(default_factory=list)

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
    #: For visits the server derives: the key whose events form one visit (``None``: a client session).
    visit_key: str | None = None


@dataclass(slots=True)
class Seen:
    """A profile a group writes to: visits it opened for it, and its latest batch's time."""

    visits: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """A profile as a group loads it (locked for the group's transaction)."""

    id: str
    merged_into: str | None
    #: ``None`` when not asked for.
    traits: dict[str, Any] | None
    anonymous: bool
    created_at: datetime
    protected: bool


@dataclass(frozen=True, slots=True)
class NewProfile:
    """A profile a group makes, with everything the group decided about it."""

    id: str
    traits: dict[str, Any]
    anonymous: bool
    visits: int
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime
    protected: bool


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """An identity a group points at a profile."""

    scope: str
    kind: str
    value: str
    profile_id: str
    created_at: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.kind, self.value)


@dataclass(frozen=True, slots=True)
class CartState:
    """A profile's cart in a source as the write path loads it, with its lifecycle, and the
    source's ``cart_abandon_after``. A cart never written has no items and no lifecycle."""

    items: list[dict[str, Any]]
    abandon_after: int
    lifecycle_id: str | None = None
    lifecycle_started_at: datetime | None = None
    #: ``None`` while the lifecycle is open (or when there never was one).
    outcome: str | None = None
    outcome_at: datetime | None = None
    outcome_due_at: datetime | None = None

    @classmethod
    def of_row(cls, row: Any, abandon_after: int) -> CartState:
        """A ``carts`` row (with its lifecycle columns) as a state."""
        return cls(
            items=list(row._mapping["items"] or []),
            abandon_after=abandon_after,
            lifecycle_id=row.lifecycle_id,
            lifecycle_started_at=row.lifecycle_started_at,
            outcome=row.outcome,
            outcome_at=row.outcome_at,
            outcome_due_at=row.outcome_due_at,
        )


@dataclass(frozen=True, slots=True)
class CartRow:
    """A profile's cart in a source as a group leaves it; ``total`` an exact decimal string."""

    profile_id: str
    source_id: str
    cart: CartState
    total: str
    at: datetime


@dataclass(frozen=True, slots=True)
class DueCart:
    """A cart whose open lifecycle is due to be abandoned, claimed (locked) by the job."""

    profile_id: str
    source_id: str
    items: list[dict[str, Any]]
    total: str
    #: Always set with ``outcome_due_at`` by Trackway; ``None`` only if a row was edited by hand.
    lifecycle_id: str | None
    lifecycle_started_at: datetime | None
    outcome_due_at: datetime


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """What a group changed on a profile it holds locked."""

    id: str
    traits: dict[str, Any]
    anonymous: bool
    protected: bool
    updated_at: datetime
