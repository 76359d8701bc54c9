"""Admin API for sources: create, list, change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field

from trackway.api.deps import AdminAuth
from trackway.core import sources as source_service
from trackway.core.values import string_problem
from trackway.errors import NotFound
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api/sources", tags=["admin"], dependencies=[AdminAuth])


def _storable(value: str) -> str:
    """No U+0000 or lone surrogate (core/values.py): PostgreSQL could not store the source."""
    problem = string_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
Secret = Annotated[Text, Field(min_length=8, max_length=200)]


class SourceCreate(BaseModel):
    name: Name
    dialect: str
    id: str | None = None
    secret: Secret | None = None
    signed_only: bool = False
    allowed_origins: list[Text] = Field(default_factory=list)


class SourcePatch(BaseModel):
    name: Name | None = None
    enabled: bool | None = None
    secret: Secret | None = None
    signed_only: bool | None = None
    allowed_origins: list[Text] | None = None


@router.post("", status_code=201)
async def create_source(body: SourceCreate, services: Services) -> Response:
    info = await source_service.create_source(
        services.uow,
        name=body.name,
        dialect=body.dialect,
        source_id=body.id,
        secret=body.secret,
        signed_only=body.signed_only,
        allowed_origins=body.allowed_origins,
    )
    services.sources.invalidate(info.id)
    return json_response(info.public(), status_code=201)


@router.get("")
async def list_sources(services: Services) -> Response:
    items = await source_service.list_sources(services.uow)
    return json_response({"items": [info.public() for info in items]})


@router.patch("/{source_id}")
async def update_source(source_id: str, body: Annotated[SourcePatch, Body()], services: Services) -> Response:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if string_problem(source_id) is not None:
        raise NotFound(f"no source {source_id!r}")
    info = await source_service.update_source(services.uow, source_id, changes)
    services.sources.invalidate(source_id)
    return json_response(info.public())
