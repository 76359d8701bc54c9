"""Sources: create, change and list them; look one up (cached) and check a request against it."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from trackway import requestlog
from trackway.core.ratelimit import TokenBuckets
from trackway.core.uow import UnitOfWork
from trackway.db.models import sources
from trackway.errors import Conflict, InvalidSource, NotFound, OriginNotAllowed, ValidationFailed

DIALECTS = ("tracardi", "tracktor", "insend", "tracify", "segment")
#: Dialects whose clients prove themselves with the source secret: one is made if none is given.
SECRET_REQUIRED = frozenset({"tracify"})
#: A source id: also what a collector request may name, so anything else is refused before a lookup.
SOURCE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
#: A cart with items and no cart activity this many seconds is abandoned (seed 004, 4.5.2).
DEFAULT_CART_ABANDON_AFTER = 3600
#: ``cart_abandon_after`` may be one second (tests) to a year.
CART_ABANDON_AFTER_RANGE = (1, 365 * 24 * 3600)
#: ``retention_days``: events older than this are deleted (``core/retention.py``); ``None``: kept.
RETENTION_DAYS_RANGE = (1, 3650)
#: ``rate_limit_per_second``: one request in 1,000 seconds to a million a second.
RATE_LIMIT_RANGE = (0.001, 1_000_000.0)
MAX_RATE_LIMIT_BURST = 10_000_000


@dataclass(frozen=True, slots=True)
class SourceInfo:
    id: str
    name: str
    dialect: str
    enabled: bool
    secret: str | None
    signed_only: bool
    allowed_origins: tuple[str, ...]
    created_at: datetime
    cart_abandon_after: int = DEFAULT_CART_ABANDON_AFTER
    retention_days: int | None = None
    #: Requests per second each process accepts (``None``: no limit), and the burst above it.
    rate_limit_per_second: float | None = None
    rate_limit_burst: int | None = None

    def public(self) -> dict[str, Any]:
        """The source as the admin API and the CLI show it."""
        data = asdict(self)
        data["allowed_origins"] = list(self.allowed_origins)
        data["created_at"] = self.created_at.isoformat()
        return data

    def allows_origin(self, origin: str | None) -> bool:
        if origin is None or not self.allowed_origins or "*" in self.allowed_origins:
            return True
        return normalize_origin(origin) in self.allowed_origins


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _info(row: Any) -> SourceInfo:
    return SourceInfo(
        id=row.id,
        name=row.name,
        dialect=row.dialect,
        enabled=row.enabled,
        secret=row.secret,
        signed_only=row.signed_only,
        allowed_origins=tuple(row.allowed_origins or ()),
        created_at=row.created_at,
        cart_abandon_after=row.cart_abandon_after,
        retention_days=row.retention_days,
        rate_limit_per_second=row.rate_limit_per_second,
        rate_limit_burst=row.rate_limit_burst,
    )


def _check_abandon_after(value: Any) -> None:
    low, high = CART_ABANDON_AFTER_RANGE
    if type(value) is not int or not low <= value <= high:
        raise ValidationFailed.field(
            ("body", "cart_abandon_after"), f"whole seconds from {low} to {high}", "int_range"
        )


def _check_retention_days(value: Any) -> None:
    low, high = RETENTION_DAYS_RANGE
    if value is not None and (type(value) is not int or not low <= value <= high):
        raise ValidationFailed.field(
            ("body", "retention_days"), f"whole days from {low} to {high}, or null (kept)", "int_range"
        )


def _check_rate_limit(rate: Any, burst: Any) -> None:
    """A rate from 0.001 to a million per second, a burst from 1 to ten million, a burst only with a rate."""
    low, high = RATE_LIMIT_RANGE
    if rate is not None and (
        type(rate) not in (int, float) or not math.isfinite(rate) or not low <= rate <= high
    ):
        raise ValidationFailed.field(
            ("body", "rate_limit_per_second"), f"requests per second from {low} to {high:g}, or null"
        )
    if burst is not None:
        if type(burst) is not int or not 1 <= burst <= MAX_RATE_LIMIT_BURST:
            raise ValidationFailed.field(
                ("body", "rate_limit_burst"), f"whole requests from 1 to {MAX_RATE_LIMIT_BURST}, or null"
            )
        if rate is None:
            raise ValidationFailed.field(("body", "rate_limit_burst"), "a burst needs rate_limit_per_second")


def _check_fields(
    *, dialect: str | None, source_id: str | None, origins: list[str] | None
) -> list[str] | None:
    if dialect is not None and dialect not in DIALECTS:
        raise ValidationFailed.field(("body", "dialect"), f"must be one of {', '.join(DIALECTS)}", "enum")
    if source_id is not None and not SOURCE_ID_RE.fullmatch(source_id):
        raise ValidationFailed.field(
            ("body", "id"), "1-128 characters: letters, digits and . _ : - (not first)", "pattern"
        )
    if origins is None:
        return None
    cleaned = []
    for index, origin in enumerate(origins):
        if origin != "*" and not re.match(r"^https?://[^/\s]+/?$", origin.strip()):
            raise ValidationFailed.field(
                ("body", "allowed_origins", index), "an origin is scheme://host[:port], or *"
            )
        cleaned.append(normalize_origin(origin))
    return cleaned


async def create_source(
    uow: UnitOfWork,
    *,
    name: str,
    dialect: str,
    source_id: str | None = None,
    secret: str | None = None,
    signed_only: bool = False,
    allowed_origins: list[str] | None = None,
    enabled: bool = True,
    cart_abandon_after: int = DEFAULT_CART_ABANDON_AFTER,
    retention_days: int | None = None,
    rate_limit_per_second: float | None = None,
    rate_limit_burst: int | None = None,
) -> SourceInfo:
    origins = _check_fields(dialect=dialect, source_id=source_id, origins=allowed_origins or [])
    _check_abandon_after(cart_abandon_after)
    _check_retention_days(retention_days)
    _check_rate_limit(rate_limit_per_second, rate_limit_burst)
    if secret is None and dialect in SECRET_REQUIRED:
        secret = secrets.token_urlsafe(32)
    if signed_only and not secret:
        raise ValidationFailed.field(("body", "signed_only"), "signed_only needs a secret")
    values = {
        "id": source_id or str(uuid.uuid4()),
        "name": name,
        "dialect": dialect,
        "enabled": enabled,
        "secret": secret,
        "signed_only": signed_only,
        "allowed_origins": origins,
        "created_at": datetime.now(UTC),
        "cart_abandon_after": cart_abandon_after,
        "retention_days": retention_days,
        "rate_limit_per_second": rate_limit_per_second,
        "rate_limit_burst": rate_limit_burst,
    }
    try:
        async with uow.transaction() as db:
            row = (await db.execute(insert(sources).values(values).returning(sources))).one()
    except IntegrityError as exc:
        raise Conflict(f"a source with id {values['id']!r} already exists") from exc
    return _info(row)


async def update_source(uow: UnitOfWork, source_id: str, changes: dict[str, Any]) -> SourceInfo:
    """Change ``enabled``, ``name``, ``secret``, ``signed_only``, ``allowed_origins`` or
    ``cart_abandon_after`` (which applies to carts from their next change on: a cart already
    waiting keeps the due time it was given), ``rate_limit_per_second`` (``None`` lifts the
    limit, and its burst with it), ``rate_limit_burst`` (``None``: one second's worth) or
    ``retention_days`` (``None``: kept for ever)."""
    allowed = {
        "enabled",
        "name",
        "secret",
        "signed_only",
        "allowed_origins",
        "cart_abandon_after",
        "rate_limit_per_second",
        "rate_limit_burst",
        "retention_days",
    }
    values = {k: v for k, v in changes.items() if k in allowed}
    if "retention_days" in values:
        _check_retention_days(values["retention_days"])
    if "rate_limit_per_second" in values and values["rate_limit_per_second"] is None:
        values["rate_limit_burst"] = None
    if "cart_abandon_after" in values:
        _check_abandon_after(values["cart_abandon_after"])
    if "allowed_origins" in values:
        values["allowed_origins"] = _check_fields(
            dialect=None, source_id=None, origins=values["allowed_origins"] or []
        )
    async with uow.transaction() as db:
        current = (await db.execute(select(sources).where(sources.c.id == source_id))).first()
        if current is None:
            raise NotFound(f"no source {source_id!r}")
        _check_rate_limit(
            values.get("rate_limit_per_second", current.rate_limit_per_second),
            values.get("rate_limit_burst", current.rate_limit_burst),
        )
        secret = values.get("secret", current.secret)
        if values.get("signed_only", current.signed_only) and not secret:
            raise ValidationFailed.field(("body", "signed_only"), "signed_only needs a secret")
        if values:
            await db.execute(update(sources).where(sources.c.id == source_id).values(values))
        row = (await db.execute(select(sources).where(sources.c.id == source_id))).one()
    return _info(row)


async def list_sources(uow: UnitOfWork) -> list[SourceInfo]:
    async with uow.read() as db:
        rows = (await db.execute(select(sources).order_by(sources.c.created_at))).all()
    return [_info(row) for row in rows]


async def get_source(uow: UnitOfWork, source_id: str) -> SourceInfo | None:
    async with uow.read() as db:
        row = (await db.execute(select(sources).where(sources.c.id == source_id))).first()
    return None if row is None else _info(row)


class SourceDirectory:
    """Sources by id, cached for a few seconds: every collector request looks one up.

    Only a cache: a source disabled through this process's API is dropped at once,
    other workers see the change within ``ttl`` seconds. When an entry expires under
    load, one lookup refreshes it and the requests arriving meanwhile wait for that
    one, instead of each taking a pooled connection for the same row.
    """

    def __init__(self, uow: UnitOfWork, ttl: float) -> None:
        self._uow = uow
        self._ttl = ttl
        self._cache: dict[str, tuple[float, SourceInfo | None]] = {}
        self._pending: dict[str, asyncio.Future[SourceInfo | None]] = {}
        #: Bumped by ``invalidate``: a lookup started before it must not refill the cache.
        self._generation = 0
        #: Rate limits, beside the cache that hands them each request's source.
        self.buckets = TokenBuckets()

    async def get(self, source_id: str) -> SourceInfo | None:
        hit = self._cache.get(source_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(source_id)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(source_id, self._generation))
            self._pending[source_id] = pending
            pending.add_done_callback(lambda _: self._pending.pop(source_id, None))
        # Shielded: a waiter that goes away (client disconnect) does not cancel the others' lookup.
        return await asyncio.shield(pending)

    async def _lookup(self, source_id: str, generation: int) -> SourceInfo | None:
        info = await get_source(self._uow, source_id)
        if self._ttl > 0 and generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache.clear()  # unknown ids sent by a flood must not grow it forever
            self._cache[source_id] = (time.monotonic() + self._ttl, info)
        return info

    def invalidate(self, source_id: str) -> None:
        self._generation += 1
        self._cache.pop(source_id, None)
        self._pending.pop(source_id, None)

    async def authenticate(
        self, source_id: str | None, dialect: str, *, origin: str | None = None
    ) -> SourceInfo:
        """The enabled source of this dialect named by the request, or ``InvalidSource``.

        A value that cannot be a source id (NUL, a lone surrogate, a space, too long) is
        refused before any lookup: it names no source, and the database need not see it.
        """
        if type(source_id) is not str or not SOURCE_ID_RE.fullmatch(source_id):
            raise InvalidSource(reason="bad_source_id")
        requestlog.note_source(source_id, dialect)  # safe to log: the pattern above holds no data
        info = await self.get(source_id)
        if info is None:
            raise InvalidSource()
        if info.dialect != dialect:
            raise InvalidSource(reason="wrong_dialect")
        if not info.enabled:
            raise InvalidSource(reason="disabled_source")
        if not info.allows_origin(origin):
            raise OriginNotAllowed()
        if info.rate_limit_per_second is not None:
            self.buckets.take(info.id, info.rate_limit_per_second, info.rate_limit_burst)
        return info
