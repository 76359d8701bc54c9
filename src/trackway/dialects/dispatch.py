"""``POST /track`` belongs to two dialects; the request's content type tells them apart.

A url-encoded form body is Tracktor's (its GET fields, POSTed because a URL got too
long); JSON, ``text/plain`` (``navigator.sendBeacon``) or no content type at all is
Tracardi's tracker payload. Dialects never import each other, so this module owns the
route and hands the request to the one that speaks its format.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from trackway.dialects import tracardi, tracktor
from trackway.dialects._common import read_body
from trackway.services import services_of


async def track(request: Request) -> Response:
    """Tracktor for a form body, Tracardi for everything else.

    One exception: ``curl -d '{...}'`` labels a JSON body as a form. A form whose body is
    a JSON object is never a Tracktor call (it would have no ``sid``), so it goes to
    Tracardi. The body read here is kept on the request for the handler to read again.
    """
    if tracktor.is_form_request(request):
        body = await read_body(request, services_of(request).settings.max_body_bytes)
        request._body = body  # Starlette replays a read body to later readers
        if dialect_of(True, body) == tracktor.DIALECT:
            return await tracktor.track(request)
    return await tracardi.track(request)


def dialect_of(is_form: bool, body: bytes) -> str:
    """The dialect of a ``POST /track``: Tracktor for a form body that is not a JSON object.

    The quarantine asks it too, to file a rejected ``POST /track`` under the right dialect.
    """
    return tracktor.DIALECT if is_form and not body.lstrip().startswith(b"{") else tracardi.DIALECT


router = APIRouter(tags=["tracardi", "tracktor"])
router.add_api_route(
    "/track",
    track,
    methods=["POST"],
    summary="Tracardi tracker payload (JSON or text/plain), or a Tracktor event (form body)",
)
