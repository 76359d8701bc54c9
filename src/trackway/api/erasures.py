"""Admin API for forgetting people: erasures, suppressions, and a person's export.

``POST /api/erasures`` only records the request (202): the erasure job does the work in
bounded transactions (``core/erasure.py``), and ``GET /api/erasures/{id}`` tells how far it
is. The routes parse, call one function and render; the rules live in the core.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from trackway.api.deps import AdminAuth
from trackway.api.inputs import MAX_ID_LENGTH, PathId, StorableText
from trackway.core import erasure
from trackway.errors import ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["privacy"], dependencies=[AdminAuth])

Limit = Annotated[int, Query(ge=1, le=1000, description="Items, newest first.")]


class ErasureRequest(BaseModel):
    """Who to erase: ``profile_id`` (a merged id erases its whole person too), or ``identity``."""

    model_config = ConfigDict(extra="forbid")

    profile_id: Annotated[StorableText, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None = None
    identity: (
        Annotated[
            StorableText,
            Field(
                min_length=3,
                max_length=32 + 1 + 1024,
                description="kind:value: email:<address>, email_sha256:<hex>, person:42, visitor:...",
            ),
        ]
        | None
    ) = None
    source: (
        Annotated[
            StorableText,
            Field(min_length=1, max_length=128, description="The source of a source-local kind."),
        ]
        | None
    ) = None
    suppress: bool = Field(
        False, description="Also store nothing that later requests send naming this person's keys."
    )


@router.post("/erasures", status_code=202)
async def request_erasure(
    body: Annotated[ErasureRequest, Body()], request: Request, services: Services
) -> Response:
    """Record an erasure of a person; the job does it. Unknown profile or identity: 404."""
    if body.profile_id is None and body.identity is None:
        raise ValidationFailed.field(("body", "profile_id"), "give profile_id or identity")
    if body.profile_id is not None and body.identity is not None:
        raise ValidationFailed.field(("body", "identity"), "give profile_id or identity, not both")
    view = await erasure.request_erasure(
        services.uow,
        profile_id=body.profile_id,
        identity=body.identity,
        source=body.source,
        suppress=body.suppress,
        requested_by=erasure.token_label(services.settings.admin_token),
    )
    job = getattr(request.app.state, "erasure_job", None)
    if job is not None:
        job.wake()
    return json_response(view, status_code=202, headers={"Location": f"/api/erasures/{view['id']}"})


@router.get("/erasures")
async def list_erasures(services: Services, limit: Limit = 100) -> Response:
    return json_response({"items": await erasure.list_erasures(services.uow, limit)})


@router.get("/erasures/{erasure_id}")
async def get_erasure(erasure_id: PathId, services: Services) -> Response:
    """An erasure's state (``pending``, ``running``, ``done``) and rows deleted so far."""
    return json_response(await erasure.get_erasure(services.uow, erasure_id))


@router.get("/suppressions")
async def list_suppressions(services: Services, limit: Limit = 100) -> Response:
    """Suppressed keys: kind, source scope and hash, never the value."""
    return json_response({"items": await erasure.list_suppressions(services.uow, limit)})


@router.delete("/suppressions/{suppression_id}", status_code=204)
async def lift_suppression(suppression_id: PathId, services: Services) -> Response:
    """Lift a suppression: requests naming the key are stored again from now on."""
    await erasure.lift_suppression(services.uow, suppression_id)
    return Response(status_code=204)


@router.get("/profiles/{profile_id}/export")
async def export_profile(profile_id: PathId, services: Services) -> Response:
    """Everything stored about the person (a subject access request), streamed as one JSON object."""
    ids = await erasure.export_person(services.uow, profile_id)
    return StreamingResponse(
        erasure.export_chunks(services.uow, ids),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="profile.json"'},
    )
