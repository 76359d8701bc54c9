"""Read API: profiles (canonical after merges), their events, sessions, lookup by identity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AfterValidator

from trackway.api.deps import AdminAuth, Limit
from trackway.api.inputs import MAX_ID_LENGTH, PathId, storable_text
from trackway.core.identity import email_sha256
from trackway.core.values import string_problem
from trackway.db import queries, segments
from trackway.errors import NotFound, ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["read"], dependencies=[AdminAuth])

#: ``kind:value``: a kind and a value; up to 1024 characters for an email address (it is hashed),
#: other values longer than any stored one (255) find nothing.
Identity = Annotated[
    str,
    Query(
        min_length=3,
        max_length=32 + 1 + 1024,
        description="kind:value, e.g. person:42 (with source=), email_sha256:<hex>, or email:<address>",
    ),
    AfterValidator(storable_text),
]
SourceScope = Annotated[
    str | None,
    Query(max_length=128, description="Scope of a source-local kind (person, guest...)."),
    AfterValidator(lambda value: None if value is None else storable_text(value)),
]
Cursor = Annotated[str | None, Query(max_length=4096, description="next_cursor of the previous page.")]


@router.get("/profiles")
async def find_profiles(
    services: Services,
    identity: Identity,
    source: SourceScope = None,
) -> Response:
    """Profiles holding an identity. A value longer than any stored one finds nothing."""
    kind, sep, value = identity.partition(":")
    if not sep or not kind or not value:
        raise ValidationFailed.field(("query", "identity"), "expected kind:value")
    if len(kind) > 32 or (kind != "email" and len(value) > MAX_ID_LENGTH):
        return json_response({"items": []})
    scope = source
    if kind == "email":
        kind, value, scope = "email_sha256", email_sha256(value), ""
    elif kind == "email_sha256":
        scope = ""
    async with services.uow.read() as db:
        items = await queries.find_profiles(db, kind=kind, value=value, scope=scope)
    return json_response({"items": items})


@router.get("/profiles/{profile_id}")
async def get_profile(profile_id: PathId, services: Services) -> Response:
    """The live profile (a merged id: its survivor) and the segments it is in now."""
    async with services.uow.read() as db:
        view = await queries.profile_view(db, profile_id)
        if view is not None:
            view["segments"] = await segments.segments_of(db, view["id"], datetime.now(UTC))
    if view is None:
        raise NotFound(f"no profile {profile_id!r}")
    return json_response(view)


@router.get("/profiles/{profile_id}/events")
async def profile_events(
    profile_id: PathId,
    services: Services,
    limit: Limit = 100,
    cursor: Cursor = None,
    order: Annotated[
        Literal["asc", "desc"], Query(description="Oldest first (asc) or newest first.")
    ] = "asc",
) -> Response:
    after = None
    if cursor:
        try:
            after = queries.decode_cursor(cursor)
        except ValueError:
            raise ValidationFailed.field(("query", "cursor"), "invalid cursor") from None
        if string_problem(after[1]) is not None:
            raise ValidationFailed.field(("query", "cursor"), "invalid cursor")
    async with services.uow.read() as db:
        live = await queries.canonical_profile_id(db, profile_id)
        if live is None:
            raise NotFound(f"no profile {profile_id!r}")
        items, next_cursor = await queries.profile_events(
            db, live, limit=limit, after=after, descending=order == "desc"
        )
    return json_response({"profile_id": live, "items": items, "next_cursor": next_cursor})


@router.get("/sessions/{session_id}")
async def get_session(session_id: PathId, services: Services) -> Response:
    async with services.uow.read() as db:
        view = await queries.session_view(db, session_id)
    if view is None:
        raise NotFound(f"no session {session_id!r}")
    return json_response(view)
