"""The collector routes, served by plain Starlette routes ahead of FastAPI's own.

A collector answers in the page load of every visitor, so its per-request cost matters
more than anywhere else. FastAPI's route machinery (dependency solving, the exit stack
it opens per request, its included-router matching) cost about 50 µs per ``POST /track``
on this machine, measured in-process with the ingest stubbed out (110 µs against 57 µs):
as much as the whole payload validation. The collector endpoints need none of it. They
take the request only, find the services on the app (``services_of``) and raise the
domain errors that ``api/errors.py`` maps, which Starlette routes honour as well.

The dialects' ``APIRouter``s stay included: they give the OpenAPI document its collector
operations, and they answer whatever these routes do not match. The routes below are the
same endpoints, path and methods, taken from those routers, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route


def lean_routes(routers: Iterable[APIRouter]) -> list[BaseRoute]:
    """A Starlette ``Route`` for every route of ``routers``, same path, endpoint and methods."""
    routes: list[BaseRoute] = []
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                raise TypeError(f"{route!r}: a collector route must be a plain API route")
            # HEAD is answered by Starlette itself for every GET route.
            methods = sorted(route.methods - {"HEAD"} if "GET" in route.methods else route.methods)
            routes.append(Route(route.path, route.endpoint, methods=methods, name=route.name))
    return routes
