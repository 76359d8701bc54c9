"""Dependencies shared by the admin and read routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trackway.errors import Unauthorized

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
