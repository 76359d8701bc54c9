"""The quarantine's API: list and read rejected requests, replay them one by one or in bulk.

``GET /api/rejections`` is keyset-paginated like the other lists (``limit``, ``cursor`` =
the previous page's ``next_cursor``), newest first. A replay answers 200 with what the
dialect answered it (``status``, ``response``) and where the rejection is now (``state``).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trackway.api.deps import AdminAuth, Limit, only_params
from trackway.api.inputs import PathId, storable_text
from trackway.api.people import CursorText, Order, SourceId, Time, time_cursor
from trackway.core.sources import DIALECTS
from trackway.db import rejections as statements
from trackway.db.rejections import RejectionFilter
from trackway.dialects.replay import ReplayOutcome, parse_response, replay
from trackway.errors import NotFound, TrackwayError
from trackway.metrics import metrics_of
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["quarantine"], dependencies=[AdminAuth])

Dialect = Literal["tracardi", "tracktor", "insend", "tracify", "segment"]
State = Literal["quarantined", "replaying", "replayed"]
Reason = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=32,
        description="invalid (422), too_large (413), unsupported_media_type (415)…",
    ),
    AfterValidator(lambda value: None if value is None else storable_text(value)),
]
assert set(Dialect.__args__) == set(DIALECTS)  # type: ignore[attr-defined]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _text_or_base64(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def rejection_view(row: Any, *, full: bool) -> dict[str, Any]:
    """A rejection as the API shows it; ``full`` adds the stored request (query, headers, body)."""
    view: dict[str, Any] = {
        "id": row.id,
        "received_at": _iso(row.received_at),
        "dialect": row.dialect,
        "source_id": row.source_id,
        "status": row.status,
        "reason": row.reason,
        "response": parse_response(row.response),
        "state": row.state,
        "replay_attempts": row.replay_attempts,
        "last_replay": None
        if row.last_replay_at is None
        else {
            "at": _iso(row.last_replay_at),
            "status": row.last_replay_status,
            "response": parse_response(row.last_replay_response),
        },
        "replayed_at": _iso(row.replayed_at),
    }
    request: dict[str, Any] = {"method": row.method, "path": row.path, "body_truncated": row.body_truncated}
    if full:
        query, _ = _text_or_base64(bytes(row.query))
        body, encoding = _text_or_base64(bytes(row.body))
        request.update(
            query=query,
            headers=[list(pair) for pair in row.headers],
            body=body,
            body_encoding=encoding,
            client_ip=row.client_ip,
        )
    view["request"] = request
    return view


@router.get(
    "/rejections",
    dependencies=[
        Depends(only_params("source", "dialect", "reason", "state", "from", "to", "order", "limit", "cursor"))
    ],
)
async def list_rejections(
    services: Services,
    source: Annotated[SourceId, Query()] = None,
    dialect: Annotated[Dialect | None, Query()] = None,
    reason: Annotated[Reason, Query()] = None,
    state: Annotated[State | None, Query()] = None,
    time_from: Annotated[Time, Query(alias="from", description="Received at or after.")] = None,
    time_to: Annotated[Time, Query(alias="to", description="Received before.")] = None,
    order: Order = "desc",
    limit: Limit = 100,
    cursor: Annotated[CursorText, Query()] = None,
) -> Response:
    """Rejected collector requests kept in the quarantine, newest first by default."""
    wanted = RejectionFilter(
        source=source, dialect=dialect, reason=reason, state=state, time_from=time_from, time_to=time_to
    )
    after = time_cursor(cursor, ("query", "cursor"))
    async with services.uow.read() as db:
        rows, next_cursor = await statements.list_page(
            db, wanted, descending=order == "desc", limit=limit, after=after
        )
    return json_response({"items": [rejection_view(r, full=False) for r in rows], "next_cursor": next_cursor})


@router.get("/rejections/{rejection_id}")
async def get_rejection(rejection_id: PathId, services: Services) -> Response:
    """One rejection with its stored request (credentials were never kept)."""
    async with services.uow.read() as db:
        row = await statements.get(db, rejection_id)
    if row is None:
        raise NotFound(f"no rejection {rejection_id!r}")
    return json_response(rejection_view(row, full=True))


class ReplayRequest(BaseModel):
    """A correction for the sender's bug; without one the request is replayed as it was kept."""

    model_config = ConfigDict(extra="forbid")

    body: Any = Field(
        None,
        description="The body to send instead: a string as it is, an object as JSON "
        "(as a form for form requests: Tracktor, InSend).",
    )
    query: str | dict[str, Any] | None = Field(
        None, description="The query string to send instead (Tracktor's GET calls carry their fields there)."
    )


def _outcome_view(outcome: ReplayOutcome) -> dict[str, Any]:
    return outcome.view()


@router.post("/rejections/{rejection_id}/replay")
async def replay_rejection(
    rejection_id: PathId,
    request: Request,
    services: Services,
    correction: Annotated[ReplayRequest | None, Body()] = None,
) -> Response:
    """Run the request through its dialect again, as it was or corrected: ``replayed`` when
    accepted (a second replay runs nothing), else it stays ``quarantined`` and says why."""
    fix = correction or ReplayRequest()
    outcome = await replay(
        request.app,
        services,
        rejection_id,
        body=fix.body,
        query=fix.query,
        metrics=metrics_of(request.app),
    )
    return json_response(_outcome_view(outcome))


RejectionId = Annotated[str, Field(min_length=1, max_length=36), AfterValidator(storable_text)]


class BulkReplay(BaseModel):
    """``ids``, or a filter over the quarantined rejections (oldest first, ``limit`` of them)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    ids: list[RejectionId] | None = Field(None, min_length=1, max_length=1000)
    source: SourceId = None
    dialect: Dialect | None = None
    reason: Reason = None
    time_from: Time = Field(None, alias="from")
    time_to: Time = Field(None, alias="to")
    limit: int = Field(100, ge=1, le=1000)


@router.post("/rejections/replay")
async def replay_many(body: Annotated[BulkReplay, Body()], request: Request, services: Services) -> Response:
    """Replay each rejection named, or each quarantined one that matches, one after another."""
    ids = body.ids
    if ids is None:
        wanted = RejectionFilter(
            source=body.source,
            dialect=body.dialect,
            reason=body.reason,
            state=statements.QUARANTINED,
            time_from=body.time_from,
            time_to=body.time_to,
        )
        async with services.uow.read() as db:
            ids = await statements.ids_matching(db, wanted, body.limit)
    results: list[dict[str, Any]] = []
    replayed = rejected = 0
    for rejection_id in dict.fromkeys(ids):
        try:
            outcome = await replay(request.app, services, rejection_id, metrics=metrics_of(request.app))
        except TrackwayError as exc:
            if exc.status_code >= 500:
                raise
            results.append({"id": rejection_id, "error": {"status": exc.status_code, **exc.body()}})
            continue
        replayed += outcome.state == statements.REPLAYED
        rejected += outcome.state != statements.REPLAYED
        results.append(_outcome_view(outcome))
    return json_response({"replayed": replayed, "rejected": rejected, "results": results})
