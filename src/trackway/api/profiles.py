"""Read API: profiles (canonical after merges), their events, sessions, lookup by identity."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from trackway.api.deps import AdminAuth, Limit
from trackway.core.identity import email_sha256
from trackway.core.values import string_problem
from trackway.db import queries
from trackway.errors import NotFound, ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["read"], dependencies=[AdminAuth])


def _known(kind: str, value: str) -> str:
    """An id no row can hold (U+0000, a lone surrogate) names nothing: a 404 before any query."""
    if string_problem(value) is not None:
        raise NotFound(f"no {kind}")
    return value


@router.get("/profiles")
async def find_profiles(
    services: Services,
    identity: str = Query(
        ...,
        description="kind:value, e.g. person:42 (with source=), email_sha256:<hex>, or email:<address>",
    ),
    source: str | None = Query(None, description="Scope of a source-local kind (person, guest...)."),
) -> Response:
    kind, sep, value = identity.partition(":")
    if not sep or not kind or not value:
        raise ValidationFailed.field(("query", "identity"), "expected kind:value")
    for name, text in (("identity", identity), ("source", source or "")):
        problem = string_problem(text)
        if problem is not None:
            raise ValidationFailed.field(("query", name), problem)
    scope = source
    if kind == "email":
        kind, value, scope = "email_sha256", email_sha256(value), ""
    elif kind == "email_sha256":
        scope = ""
    async with services.uow.read() as db:
        items = await queries.find_profiles(db, kind=kind, value=value, scope=scope)
    return json_response({"items": items})


@router.get("/profiles/{profile_id}")
async def get_profile(profile_id: str, services: Services) -> Response:
    _known("profile", profile_id)
    async with services.uow.read() as db:
        view = await queries.profile_view(db, profile_id)
    if view is None:
        raise NotFound(f"no profile {profile_id!r}")
    return json_response(view)


@router.get("/profiles/{profile_id}/events")
async def profile_events(
    profile_id: str,
    services: Services,
    limit: Limit = 100,
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
) -> Response:
    _known("profile", profile_id)
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
        items, next_cursor = await queries.profile_events(db, live, limit=limit, after=after)
    return json_response({"profile_id": live, "items": items, "next_cursor": next_cursor})


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, services: Services) -> Response:
    _known("session", session_id)
    async with services.uow.read() as db:
        view = await queries.session_view(db, session_id)
    if view is None:
        raise NotFound(f"no session {session_id!r}")
    return json_response(view)
