"""Segments: saved conditions whose members are whoever matches now (README, "Segments").

``POST /api/segments``, ``GET /api/segments``, ``GET/PATCH/DELETE /api/segments/{id}``,
``GET /api/segments/{id}/people`` (the members now, with ``size``) and
``POST /api/segments/preview`` (size and first page of a condition, nothing saved).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from trackway.api.conditions import CONDITION_DESCRIPTION, parse_condition
from trackway.api.deps import AdminAuth, Limit, only_params
from trackway.api.inputs import PathId, StorableText
from trackway.api.people import CursorText, Order, Sort, people_cursor, people_page
from trackway.db import segments as segments_db
from trackway.errors import Conflict, NotFound, ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api/segments", tags=["segments"], dependencies=[AdminAuth])

Name = Annotated[StorableText, Field(min_length=1, max_length=200)]


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    condition: dict[str, Any] = Field(description=CONDITION_DESCRIPTION)


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    condition: dict[str, Any] | None = Field(None, description=CONDITION_DESCRIPTION)


class Preview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: dict[str, Any] = Field(description=CONDITION_DESCRIPTION)
    sort: Sort = "last_seen_at"
    order: Order = "desc"
    limit: int = Field(100, ge=1, le=1000)
    include_bots: bool = Field(
        False, description='Let bots\' events (flagged "bot": true) match the event conditions too.'
    )


@router.post("", status_code=201)
async def create_segment(body: Annotated[SegmentCreate, Body()], services: Services) -> Response:
    condition = parse_condition(body.condition, ("body", "condition"))
    view = await segments_db.create_segment(services.uow, name=body.name, condition=condition)
    return json_response(view, status_code=201)


@router.get("")
async def list_segments(services: Services) -> Response:
    async with services.uow.read() as db:
        items = await segments_db.list_segments(db)
    return json_response({"items": items})


@router.post("/preview")
async def preview_segment(body: Annotated[Preview, Body()], services: Services) -> Response:
    """The size and first page of a condition's people now, without saving anything."""
    condition = parse_condition(body.condition, ("body", "condition"))
    answer = await people_page(
        services,
        where=condition,
        source=None,
        identity=None,
        last_seen_after=None,
        last_seen_before=None,
        sort=body.sort,
        order=body.order,
        limit=body.limit,
        after=None,
        with_size=True,
        include_bots=body.include_bots,
    )
    return json_response(answer)


@router.get("/{segment_id}")
async def get_segment(segment_id: PathId, services: Services) -> Response:
    async with services.uow.read() as db:
        view = await segments_db.get_segment(db, segment_id)
    if view is None:
        raise NotFound(f"no segment {segment_id!r}")
    return json_response(view)


@router.patch("/{segment_id}")
async def update_segment(
    segment_id: PathId, body: Annotated[SegmentPatch, Body()], services: Services
) -> Response:
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.condition is not None:
        changes["condition"] = parse_condition(body.condition, ("body", "condition"))
    view = await segments_db.update_segment(services.uow, segment_id, changes)
    if view is None:
        raise NotFound(f"no segment {segment_id!r}")
    return json_response(view)


def _stored_condition(segment: dict[str, Any]) -> dict[str, Any]:
    """The saved condition, checked again: one saved by an older Trackway, or edited in the
    database, may no longer be valid. That is a 409 that says to fix it, not a 500."""
    try:
        return parse_condition(segment["condition"], ("segment", "condition"))
    except ValidationFailed as exc:
        first = exc.detail[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Conflict(
            f"segment {segment['id']!r} has a stored condition that is no longer valid "
            f"({where}: {first['msg']}); replace it with PATCH /api/segments/{segment['id']}"
        ) from None


@router.delete("/{segment_id}", status_code=204)
async def delete_segment(segment_id: PathId, services: Services) -> Response:
    if not await segments_db.delete_segment(services.uow, segment_id):
        raise NotFound(f"no segment {segment_id!r}")
    return Response(status_code=204)


@router.get(
    "/{segment_id}/people",
    dependencies=[Depends(only_params("sort", "order", "limit", "cursor", "include_bots"))],
)
async def segment_people(
    segment_id: PathId,
    services: Services,
    sort: Sort = "last_seen_at",
    order: Order = "desc",
    limit: Limit = 100,
    cursor: Annotated[CursorText, Query()] = None,
    include_bots: Annotated[
        bool, Query(description="Let bots' events match the segment's event conditions too.")
    ] = False,
) -> Response:
    """The segment's members now (``size``: how many), a page at a time."""
    after = people_cursor(cursor, sort, order == "desc", ("query", "cursor"))
    async with services.uow.read() as db:
        segment = await segments_db.get_segment(db, segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id!r}")
    answer = await people_page(
        services,
        where=_stored_condition(segment),
        source=None,
        identity=None,
        last_seen_after=None,
        last_seen_before=None,
        sort=sort,
        order=order,
        limit=limit,
        after=after,
        with_size=True,
        include_bots=include_bots,
    )
    return json_response({"segment": {"id": segment["id"], "name": segment["name"]}, **answer})
