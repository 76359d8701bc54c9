"""The collector endpoints are served by the lean Starlette routes, and still documented."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import Route

from trackway.app import create_app
from trackway.settings import Settings

COLLECTOR_OPERATIONS = {
    ("/track", "post"),
    ("/track", "get"),
    ("/set", "get"),
    ("/set", "post"),
    ("/alias", "get"),
    ("/alias", "post"),
    ("/watch/event", "post"),
    ("/tracify/events", "post"),
    ("/tracker", "get"),
    ("/tracker/liliput.min.js", "get"),
    *(
        (path, "post")
        for path in (
            *(f"/v1/{name}" for name in ("track", "identify", "page", "screen", "group", "alias", "batch")),
            *(f"{prefix}/{letter}" for prefix in ("", "/v1") for letter in "tipsgab"),
        )
    ),
}


def test_collector_requests_match_a_lean_route_before_any_fastapi_route() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    first_of: dict[tuple[str, str], object] = {}
    for route in app.router.routes:
        methods = getattr(route, "methods", None) or set()
        for method in methods:
            first_of.setdefault((getattr(route, "path", ""), method.lower()), route)
    for operation in COLLECTOR_OPERATIONS:
        route = first_of[operation]
        assert isinstance(route, Route) and not isinstance(route, APIRoute), operation


async def test_the_openapi_document_keeps_every_collector_operation(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    found = {(path, method) for path, item in paths.items() for method in item}
    assert found >= COLLECTOR_OPERATIONS
