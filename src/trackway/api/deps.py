"""Dependencies shared by the admin and read routes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trackway.errors import Unauthorized, ValidationFailed

#: Documents the scheme in OpenAPI; the header is checked below, with Trackway's own 401.
_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="TRACKWAY_ADMIN_TOKEN")


async def _admin(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    """Bearer ``TRACKWAY_ADMIN_TOKEN``; with no token configured every call is refused."""
    expected = request.app.state.services.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer":
        raise Unauthorized()
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized()


AdminAuth = Depends(_admin)

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]


def only_params(*names: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing query parameters the route does not take: a 422 naming the first
    one (a misspelt ``sortt=visits`` would otherwise be a silently different answer)."""
    allowed = frozenset(names)

    async def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                raise ValidationFailed.field(("query", name), "unknown parameter", "extra_forbidden")

    return check
