"""Read API across people: ``/api/people`` (filter, sort, page), ``/api/events``, a profile's visits.

Only live profiles are listed: a merged profile's rows belong to its survivor. Every list
is keyset-paginated (``limit``, ``cursor`` = the previous page's ``next_cursor``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trackway import jsonutil
from trackway.api.conditions import CONDITION_DESCRIPTION, parse_condition
from trackway.api.deps import AdminAuth, Limit, only_params
from trackway.api.inputs import MAX_ID_LENGTH, PathId, storable_text
from trackway.core.identity import email_sha256
from trackway.db import people as people_db
from trackway.db import queries
from trackway.db.people import EventFilter, PeopleFilter
from trackway.errors import NotFound, ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["read"], dependencies=[AdminAuth])

Loc = tuple[str | int, ...]


def utc_time(value: datetime | None) -> datetime | None:
    """A time as UTC; one without a zone is read as UTC (a stored time is compared with it)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def _optional_text(value: str | None) -> str | None:
    return None if value is None else storable_text(value)


Time = Annotated[datetime | None, AfterValidator(utc_time)]
SourceId = Annotated[str | None, Field(min_length=1, max_length=128), AfterValidator(_optional_text)]
IdentityText = Annotated[
    str | None,
    Field(
        min_length=3, max_length=32 + 1 + 1024, description="kind:value, e.g. person:42 or email:<address>"
    ),
    AfterValidator(_optional_text),
]
Sort = Literal["last_seen_at", "created_at", "visits"]
Order = Literal["desc", "asc"]
CursorText = Annotated[str | None, Field(max_length=4096, description="next_cursor of the previous page.")]


def identity_key(identity: str | None, loc: Loc) -> tuple[str, str, str | None] | Literal[False] | None:
    """``(kind, value, scope)`` of ``kind:value`` (``email:`` hashed); ``False``: one no row can hold."""
    if identity is None:
        return None
    kind, sep, value = identity.partition(":")
    if not sep or not kind or not value:
        raise ValidationFailed.field(loc, "expected kind:value")
    if len(kind) > 32 or (kind != "email" and len(value) > MAX_ID_LENGTH):
        return False
    if kind == "email":
        return "email_sha256", email_sha256(value), ""
    if kind == "email_sha256":
        return kind, value, ""
    return kind, value, None


def parse_where(text: str | None, loc: Loc) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        raw = jsonutil.loads(text)
    except ValueError:
        raise ValidationFailed.field(
            loc, "not JSON: a condition tree (README, The condition language)"
        ) from None
    return parse_condition(raw, loc)


def people_cursor(cursor: str | None, sort: str, descending: bool, loc: Loc) -> tuple[Any, str] | None:
    if not cursor:
        return None
    try:
        return people_db.decode_people_cursor(cursor, sort=sort, descending=descending)
    except ValueError:
        raise ValidationFailed.field(loc, "invalid cursor (or one of another sort or order)") from None


def time_cursor(cursor: str | None, loc: Loc) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        time, last_id = people_db.decode_cursor(cursor, kinds=(datetime, str))
    except ValueError:
        raise ValidationFailed.field(loc, "invalid cursor") from None
    return time, last_id


async def people_page(
    services: Services,
    *,
    where: dict[str, Any] | None,
    source: str | None,
    identity: tuple[str, str, str | None] | Literal[False] | None,
    last_seen_after: datetime | None,
    last_seen_before: datetime | None,
    sort: str,
    order: str,
    limit: int,
    after: tuple[Any, str] | None,
    with_size: bool = False,
    include_bots: bool = False,
) -> dict[str, Any]:
    """A page of people (and their number when ``with_size``), as the API answers it."""
    if identity is False:  # a key no identity row can hold: nobody
        return {"items": [], "next_cursor": None, **({"size": 0} if with_size else {})}
    wanted = PeopleFilter(
        condition=where,
        source=source,
        identity=identity,
        last_seen_after=last_seen_after,
        last_seen_before=last_seen_before,
        include_bots=include_bots,
    )
    now = datetime.now(UTC)
    async with services.uow.read() as db:
        items, next_cursor = await people_db.list_people(
            db, wanted, now=now, sort=sort, descending=order == "desc", limit=limit, after=after
        )
        size = await people_db.count_people(db, wanted, now) if with_size else None
    answer: dict[str, Any] = {"items": items, "next_cursor": next_cursor}
    if with_size:
        answer["size"] = size
    return answer


@router.get(
    "/people",
    dependencies=[
        Depends(
            only_params(
                "where",
                "source",
                "identity",
                "last_seen_after",
                "last_seen_before",
                "sort",
                "order",
                "limit",
                "cursor",
            )
        )
    ],
)
async def list_people(
    services: Services,
    where: Annotated[
        str | None, Query(max_length=16384, description=f"JSON. {CONDITION_DESCRIPTION}")
    ] = None,
    source: Annotated[
        SourceId, Query(description="People with an event, a visit or an identity in it.")
    ] = None,
    identity: Annotated[IdentityText, Query()] = None,
    last_seen_after: Annotated[Time, Query()] = None,
    last_seen_before: Annotated[Time, Query()] = None,
    sort: Sort = "last_seen_at",
    order: Order = "desc",
    limit: Limit = 100,
    cursor: Annotated[CursorText, Query()] = None,
) -> Response:
    """Live profiles that match, newest seen first by default."""
    answer = await people_page(
        services,
        where=parse_where(where, ("query", "where")),
        source=source,
        identity=identity_key(identity, ("query", "identity")),
        last_seen_after=last_seen_after,
        last_seen_before=last_seen_before,
        sort=sort,
        order=order,
        limit=limit,
        after=people_cursor(cursor, sort, order == "desc", ("query", "cursor")),
    )
    return json_response(answer)


class PeopleSearch(BaseModel):
    """``POST /api/people/search``: the query of ``GET /api/people`` as a body, ``where`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    where: dict[str, Any] | None = Field(None, description=CONDITION_DESCRIPTION)
    source: SourceId = None
    identity: IdentityText = None
    last_seen_after: Time = None
    last_seen_before: Time = None
    sort: Sort = "last_seen_at"
    order: Order = "desc"
    limit: int = Field(100, ge=1, le=1000)
    cursor: CursorText = None
    size: bool = Field(False, description="Also count every match (size).")


@router.post("/people/search")
async def search_people(body: Annotated[PeopleSearch, Body()], services: Services) -> Response:
    answer = await people_page(
        services,
        where=None if body.where is None else parse_condition(body.where, ("body", "where")),
        source=body.source,
        identity=identity_key(body.identity, ("body", "identity")),
        last_seen_after=body.last_seen_after,
        last_seen_before=body.last_seen_before,
        sort=body.sort,
        order=body.order,
        limit=body.limit,
        after=people_cursor(body.cursor, body.sort, body.order == "desc", ("body", "cursor")),
        with_size=body.size,
    )
    return json_response(answer)


EventType = Annotated[str | None, Query(min_length=1, max_length=255), AfterValidator(_optional_text)]
ProfileFilter = Annotated[
    str | None,
    Query(
        min_length=1, max_length=MAX_ID_LENGTH, description="A profile id; a merged one means its survivor."
    ),
    AfterValidator(_optional_text),
]


@router.get(
    "/events",
    dependencies=[
        Depends(only_params("source", "type", "profile", "from", "to", "order", "limit", "cursor"))
    ],
)
async def list_events(
    services: Services,
    source: Annotated[SourceId, Query()] = None,
    type: EventType = None,
    profile: ProfileFilter = None,
    time_from: Annotated[Time, Query(alias="from", description="Events at or after (event time).")] = None,
    time_to: Annotated[Time, Query(alias="to", description="Events before (event time).")] = None,
    order: Order = "desc",
    limit: Limit = 100,
    cursor: Annotated[CursorText, Query()] = None,
) -> Response:
    """Events across profiles by event time, newest first by default."""
    after = time_cursor(cursor, ("query", "cursor"))
    async with services.uow.read() as db:
        live = None
        if profile is not None:
            live = await queries.canonical_profile_id(db, profile)
            if live is None:  # no such profile: no events
                return json_response({"items": [], "next_cursor": None})
        wanted = EventFilter(source=source, type=type, profile_id=live, time_from=time_from, time_to=time_to)
        items, next_cursor = await people_db.list_events(
            db, wanted, descending=order == "desc", limit=limit, after=after
        )
    return json_response({"items": items, "next_cursor": next_cursor})


@router.get("/profiles/{profile_id}/sessions", dependencies=[Depends(only_params("limit", "cursor"))])
async def profile_sessions(
    profile_id: PathId,
    services: Services,
    limit: Limit = 100,
    cursor: Annotated[CursorText, Query()] = None,
) -> Response:
    """The profile's visits (a merged id: its survivor's), newest first."""
    after = time_cursor(cursor, ("query", "cursor"))
    async with services.uow.read() as db:
        live = await queries.canonical_profile_id(db, profile_id)
        if live is None:
            raise NotFound(f"no profile {profile_id!r}")
        items, next_cursor = await people_db.profile_sessions(db, live, limit=limit, after=after)
    return json_response({"profile_id": live, "items": items, "next_cursor": next_cursor})
