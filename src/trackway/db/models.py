"""The tables of ``design.md``: sources, profiles, identities, sessions, events, merges.

Rows that belong to a person carry ``profile_id`` so that a distributed PostgreSQL
(Citus) could shard them by it later. Ids are strings: server-made ids are UUID4 text,
and client-sent keys (Tracardi session ids, event ids) are arbitrary short strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from trackway.db.base import Base, JsonColumn, UTCDateTime

ID = String(36)
KEY = String(128)


class Source(Base):
    """A site, app or backend allowed to send, in one dialect."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(KEY, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    dialect: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    secret: Mapped[str | None] = mapped_column(String(200))
    signed_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    allowed_origins: Mapped[list[str]] = mapped_column(JsonColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Seconds without cart activity after which a cart with items is abandoned (migration 0009).
    cart_abandon_after: Mapped[int] = mapped_column(Integer, server_default=text("3600"))
    #: Events older than this many days are deleted by the retention job; ``None``: kept (migration 0014).
    retention_days: Mapped[int | None] = mapped_column(Integer)
    #: Requests per second each Trackway process accepts for the source (``NULL``: no limit;
    #: migration 0013), and how many may come at once above that rate.
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)


class Profile(Base):
    """One person. ``merged_into`` is set, irreversibly, when a merge folds it into another."""

    __tablename__ = "profiles"
    __table_args__ = (
        # Only merged profiles are indexed (migration 0004): the index finds the profiles merged
        # into one, and a live-profile lookup (``merged_into IS NULL``) cannot be planned on it.
        Index(
            "ix_profiles_merged_into",
            "merged_into",
            postgresql_where=text("merged_into IS NOT NULL"),
            sqlite_where=text("merged_into IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    traits: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    anonymous: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    visits: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    merged_into: Mapped[str | None] = mapped_column(ID, ForeignKey("profiles.id"))
    #: Named by a secure (``signed_only``) source: unverified claims never reach it (migration 0006).
    protected: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class Identity(Base):
    """A key that names a person: ``(scope, kind, value)`` is unique and points at one profile.

    ``scope`` is the source id for source-local kinds (``person``, ``guest``...) and the
    empty string for global kinds (``email_sha256``), so one unique key covers both.
    """

    __tablename__ = "identities"

    scope: Mapped[str] = mapped_column(KEY, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    profile_id: Mapped[str] = mapped_column(ID, ForeignKey("profiles.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Session(Base):
    """One visit. ``id`` is derived from ``(source_id, client_key)`` (UUID5), so it is stable."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("source_id", "client_key"),
        # started_at, not last_event_at: a column no touch changes, so touching a visit is a
        # HOT update that writes no index (migration 0005).
        Index("ix_sessions_visit", "source_id", "visit_key", "started_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    source_id: Mapped[str] = mapped_column(KEY, ForeignKey("sources.id"))
    client_key: Mapped[str] = mapped_column(KEY)
    #: For visits the server derives (no client session id): the key whose events form
    #: one visit until ``session_timeout`` of silence; ``None`` for client sessions.
    visit_key: Mapped[str | None] = mapped_column(String(255))
    profile_id: Mapped[str] = mapped_column(ID, ForeignKey("profiles.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    context: Mapped[dict[str, Any]] = mapped_column(JsonColumn)


class Event(Base):
    """One thing that happened. ``dedup_key`` (a client event id, an order id) is unique per source.

    No foreign keys, on purpose (migration 0003): the checks cost as much as the insert on
    the busiest table, and the ingest core keeps the references, and the tests check them after every test.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source_id", "dedup_key"),
        Index("ix_events_profile_time", "profile_id", "time", "id"),
        # GET /api/events, all events or one type, by time (migration 0007); the read side
        # answers from the type index alone, so it holds the profile id and the bot flag too
        # (migration 0010).
        Index("ix_events_time", "time", "id"),
        Index("ix_events_type_time", "type", "time", "id", "profile_id", "bot"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    source_id: Mapped[str] = mapped_column(KEY)
    profile_id: Mapped[str | None] = mapped_column(ID)
    session_id: Mapped[str | None] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(255))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    context: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    #: Sent by a bot (migration 0010): the read side leaves it out unless asked.
    bot: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class ProfileMerge(Base):
    """Audit of an irreversible merge: ``from_profile_id`` was folded into ``into_profile_id``."""

    __tablename__ = "profile_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    from_profile_id: Mapped[str] = mapped_column(ID, ForeignKey("profiles.id"), index=True)
    into_profile_id: Mapped[str] = mapped_column(ID, ForeignKey("profiles.id"), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(KEY, ForeignKey("sources.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Cart(Base):
    """The current cart of a profile in a source, and its lifecycle (migration 0009).

    ``items`` is a list of ``{"product_id", "qnt", "price", ...}`` with prices as exact
    decimal strings; ``total`` is their sum, also an exact decimal string.

    A lifecycle runs from the first item to its one outcome (``core/cart_outcomes.py``):
    ``outcome`` is ``NULL`` while it is open, then ``abandoned``, ``canceled`` or
    ``purchased``. ``outcome_due_at`` is set only while it is open: when it is abandoned
    unless the cart changes first. It is the due work the background job claims.
    """

    __tablename__ = "carts"
    __table_args__ = (
        Index(
            "ix_carts_outcome_due_at",
            "outcome_due_at",
            postgresql_where=text("outcome_due_at IS NOT NULL"),
            sqlite_where=text("outcome_due_at IS NOT NULL"),
        ),
    )

    profile_id: Mapped[str] = mapped_column(ID, ForeignKey("profiles.id"), primary_key=True)
    source_id: Mapped[str] = mapped_column(KEY, ForeignKey("sources.id"), primary_key=True)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JsonColumn)
    total: Mapped[str] = mapped_column(String(40))
    item_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lifecycle_id: Mapped[str | None] = mapped_column(ID)
    lifecycle_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Segment(Base):
    """A saved condition (``db/conditions.py``); its members are whoever matches it now."""

    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SavedMetric(Base):
    """A metric saved by name: ``definition`` is the body of ``POST /api/metrics/query`` without dates."""

    __tablename__ = "metrics"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    definition: Mapped[dict[str, Any]] = mapped_column(JsonColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SavedFunnel(Base):
    """A funnel saved by name: its event types in order, and the source it is limited to, if any."""

    __tablename__ = "funnels"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    steps: Mapped[list[str]] = mapped_column(JsonColumn)
    source: Mapped[str | None] = mapped_column(KEY)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Erasure(Base):
    """A request to forget a person (``core/erasure.py``), and afterwards its audit row.

    While it is ``pending`` or ``running``, ``target_profile_id`` names the profile to erase;
    once ``done`` it is cleared, and the row keeps only what is not personal: when, which
    admin token asked (a hash of it, never the token), the erased keys as SHA-256 hashes,
    and how many rows of each kind were deleted (migration 0014).
    """

    __tablename__ = "erasures"
    __table_args__ = (
        Index(
            "ix_erasures_open",
            "requested_at",
            postgresql_where=text("state <> 'done'"),
            sqlite_where=text("state <> 'done'"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    suppress: Mapped[bool] = mapped_column(Boolean)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    requested_by: Mapped[str] = mapped_column(String(80))
    #: What was asked for: ``profile`` or ``identity`` (its hash is in ``key_hashes``).
    subject: Mapped[str] = mapped_column(String(16))
    target_profile_id: Mapped[str | None] = mapped_column(ID)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``[{"kind", "scope", "hash"}]``: the request's key, then every key erased.
    key_hashes: Mapped[list[dict[str, Any]]] = mapped_column(JsonColumn)
    #: Rows deleted so far, by table.
    counts: Mapped[dict[str, int]] = mapped_column(JsonColumn)


class Suppression(Base):
    """An erased person's key: a batch naming it is answered and stores nothing (migration 0014).

    The key is kept as a SHA-256 hash (``db/erasure.key_hash``) of its scope, kind and value,
    so the table holds nothing personal and still matches every later request.
    """

    __tablename__ = "suppressions"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(KEY)
    erasure_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobState(Base):
    """The progress of a background job shared by every process: the row is the claim
    (``FOR UPDATE SKIP LOCKED``), ``cursor_*`` where the pass is, ``next_run_at`` when the
    next pass is due (migration 0014; the retention job, ``core/retention.py``)."""

    __tablename__ = "job_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cursor_id: Mapped[str | None] = mapped_column(ID)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Rejection(Base):
    """A collector request rejected with a 4xx (not 401/403) for a known source: kept to be
    read, fixed and replayed (``dialects/quarantine.py``). The raw request is kept as it came,
    without credentials; ``response`` is the JSON body the client got, as text (a client's
    string in a ``loc`` may hold ``\\u0000``, which PostgreSQL's JSONB refuses)."""

    __tablename__ = "rejections"
    __table_args__ = (
        Index("ix_rejections_received_at", "received_at", "id"),
        Index("ix_rejections_source_received_at", "source_id", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dialect: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(KEY)
    status: Mapped[int] = mapped_column(Integer)
    #: A short code of why: ``invalid`` (422), ``too_large`` (413), ``unsupported_media_type`` (415)...
    reason: Mapped[str] = mapped_column(String(32))
    response: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(255))
    query: Mapped[bytes] = mapped_column(LargeBinary)
    #: ``[[name, value], ...]``, names lower-cased, credentials left out.
    headers: Mapped[list[list[str]]] = mapped_column(JsonColumn)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: The body was over the limit: only its first ``max_body_bytes`` (or nothing) are kept.
    body_truncated: Mapped[bool] = mapped_column(Boolean)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    #: ``quarantined``, ``replaying`` (claimed by a replay since ``claimed_at``) or ``replayed``.
    state: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replay_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_replay_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_replay_status: Mapped[int | None] = mapped_column(Integer)
    last_replay_response: Mapped[str | None] = mapped_column(Text)
    #: When a replay was accepted (``state`` is then ``replayed``).
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


sources = Source.__table__
profiles = Profile.__table__
identities = Identity.__table__
sessions = Session.__table__
events = Event.__table__
profile_merges = ProfileMerge.__table__
carts = Cart.__table__
segments = Segment.__table__
saved_metrics = SavedMetric.__table__
saved_funnels = SavedFunnel.__table__
erasures = Erasure.__table__
suppressions = Suppression.__table__
job_state = JobState.__table__
rejections = Rejection.__table__
