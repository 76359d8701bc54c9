"""Admin API for sources: create, list, change.

A source's secret is shown when it is made: in the answer to the create that made it, and
to the change that set or rotated it. Lists and the other answers say only ``has_secret``:
a secret that every admin listing repeated would end up in shells' scrollback, CI logs and
screenshots, and one that was never shown again cannot leak that way.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator

from trackway.api.deps import AdminAuth
from trackway.api.inputs import PathId, StorableText
from trackway.core import sources as source_service
from trackway.core.sources import SourceInfo
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api/sources", tags=["admin"], dependencies=[AdminAuth])

Name = Annotated[StorableText, Field(min_length=1, max_length=200)]
Secret = Annotated[StorableText, Field(min_length=8, max_length=200)]
#: ``scheme://host[:port]`` or ``*``; the longest host name is 253 characters.
Origin = Annotated[StorableText, Field(min_length=1, max_length=300)]
Origins = Annotated[list[Origin], Field(max_length=100)]
AbandonAfter = Annotated[
    int,
    Field(
        ge=source_service.CART_ABANDON_AFTER_RANGE[0],
        le=source_service.CART_ABANDON_AFTER_RANGE[1],
        description="Seconds without cart activity after which a cart with items is abandoned "
        "(a cart-abandoned event).",
    ),
]
RetentionDays = Annotated[
    int | None,
    Field(
        ge=source_service.RETENTION_DAYS_RANGE[0],
        le=source_service.RETENTION_DAYS_RANGE[1],
        strict=True,
        description="Events older than this many days are deleted by the retention job; null: kept.",
    ),
]

RatePerSecond = Annotated[
    float,
    Field(
        ge=source_service.RATE_LIMIT_RANGE[0],
        le=source_service.RATE_LIMIT_RANGE[1],
        allow_inf_nan=False,
        description="Requests per second each Trackway process accepts for this source; more get "
        "a 429 with Retry-After. Null: no limit (the default).",
    ),
]
Burst = Annotated[
    int,
    Field(
        ge=1,
        le=source_service.MAX_RATE_LIMIT_BURST,
        description="Requests that may come at once above the rate (default: one second's worth).",
    ),
]


def source_view(info: SourceInfo, *, show_secret: bool = False) -> dict[str, Any]:
    """A source as the admin API and the CLI show it: ``has_secret``, and the secret only when
    ``show_secret`` (the answer to the call that made or rotated it)."""
    data = info.public()
    secret = data.pop("secret")
    data["has_secret"] = secret is not None
    if show_secret:
        data["secret"] = secret
    return data


class SourceCreate(BaseModel):
    name: Name
    dialect: str = Field(max_length=16)
    #: Checked by the core too; here first so that ``"abc\n"`` (which Python's ``$`` lets
    #: through) is refused as well.
    id: StorableText | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    secret: Secret | None = None
    signed_only: bool = False
    allowed_origins: Origins = Field(default_factory=list)
    cart_abandon_after: AbandonAfter = source_service.DEFAULT_CART_ABANDON_AFTER
    retention_days: RetentionDays = None
    rate_limit_per_second: RatePerSecond | None = None
    rate_limit_burst: Burst | None = None


class SourcePatch(BaseModel):
    name: Name | None = None
    enabled: bool | None = None
    secret: Secret | None = Field(None, description="Set or replace the secret (null removes it).")
    rotate_secret: bool = Field(False, description="Replace the secret by a new generated one.")
    signed_only: bool | None = None
    allowed_origins: Origins | None = None
    cart_abandon_after: AbandonAfter | None = None
    retention_days: RetentionDays = None
    rate_limit_per_second: RatePerSecond | None = Field(None, description="Null lifts the limit.")
    rate_limit_burst: Burst | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> SourcePatch:
        if self.rotate_secret and "secret" in self.model_fields_set:
            raise ValueError("give either secret or rotate_secret, not both")
        return self


@router.post("", status_code=201)
async def create_source(body: SourceCreate, services: Services) -> Response:
    """Create a source; the answer is the only one that shows its secret."""
    info = await source_service.create_source(
        services.uow,
        name=body.name,
        dialect=body.dialect,
        source_id=body.id,
        secret=body.secret,
        signed_only=body.signed_only,
        allowed_origins=body.allowed_origins,
        cart_abandon_after=body.cart_abandon_after,
        retention_days=body.retention_days,
        rate_limit_per_second=body.rate_limit_per_second,
        rate_limit_burst=body.rate_limit_burst,
    )
    services.sources.invalidate(info.id)
    return json_response(source_view(info, show_secret=True), status_code=201)


@router.get("")
async def list_sources(services: Services) -> Response:
    """Every source, with ``has_secret`` instead of its secret."""
    items = await source_service.list_sources(services.uow)
    return json_response({"items": [source_view(info) for info in items]})


@router.patch("/{source_id}")
async def update_source(
    source_id: PathId, body: Annotated[SourcePatch, Body()], services: Services
) -> Response:
    """Change a source; the secret is shown only when this call set or rotated it."""
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    if changes.pop("rotate_secret", False):
        changes["secret"] = secrets.token_urlsafe(32)
    info = await source_service.update_source(services.uow, source_id, changes)
    services.sources.invalidate(source_id)
    return json_response(source_view(info, show_secret="secret" in changes))
