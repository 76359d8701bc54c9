"""The ceiling: a bare FastAPI app whose ``POST /track`` only validates the Tracardi payload.

It reads the body, validates it with a pydantic model shaped like Trackway's tracker payload
(``trackway.dialects.tracardi.TrackerPayload``, copied so that this app does not move with the
server), and answers in Trackway's response shape with made-up ids, writing nothing anywhere.
No web stack on this machine serves the same traffic much faster, so Trackway's req/s divided
by this app's is the share of the achievable that Trackway reaches.

    uvicorn --app-dir bench ceiling_app:app --host 127.0.0.1 --port 8001 --workers 1 \\
        --no-access-log --log-level warning
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Key = Annotated[str, Field(min_length=1, max_length=128)]
MAX_BODY_BYTES = 1024 * 1024


class _Ref(BaseModel):
    model_config = ConfigDict(extra="allow")


class SourceRefIn(_Ref):
    id: Key


class OptionalRefIn(_Ref):
    id: Key | None = None


class TrackerEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Key | None = None
    type: Annotated[str, Field(min_length=1, max_length=255)]
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    time: datetime | None = None
    tags: list[str] = Field(default_factory=list)


class TrackerPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: SourceRefIn
    session: OptionalRefIn | None = None
    profile: OptionalRefIn | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    events: list[TrackerEvent]
    options: dict[str, Any] = Field(default_factory=dict)


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def read_payload(request: Request) -> TrackerPayload | Response:
    """The validated payload, or the 413/422 answer Trackway would give."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return json_response({"detail": "Request body is too large."}, 413)
    try:
        return TrackerPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return json_response({"detail": [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in errors]}, 422)


app = FastAPI(title="bench ceiling", openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@app.post("/track")
async def track(request: Request) -> Response:
    payload = await read_payload(request)
    if isinstance(payload, Response):
        return payload
    profile_id = payload.profile.id if payload.profile and payload.profile.id else str(uuid.uuid4())
    session_id = payload.session.id if payload.session else None
    return json_response(
        {
            "profile": {"id": profile_id},
            "session": {"id": session_id} if session_id else None,
            "events": [str(uuid.uuid4()) for _ in payload.events],
            "duplicates": [],
        }
    )
