"""The demo page: ``GET /demo?source=<id>``, off unless ``TRACKWAY_DEMO=true``.

A newcomer opens it and sees Trackway work in a browser: the page carries the real snippet,
its buttons call ``window.tracker.track``, and it shows the profile id and the events stored
for it. Those events come from ``GET /demo/events``, not from the read API: the read API
needs the admin token, which must never reach a page. ``/demo/events`` answers only while
the demo is on, only for an enabled Tracardi source, and only with the events of the one
profile named, in that source, and only their type, time and properties (no IPs, no user
agents). A profile id is a random UUID the server handed to that browser, so knowing it is
what the page already proves; still, the demo is for trying Trackway, not for production.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import AfterValidator
from sqlalchemy import func, select

from trackway.api.inputs import storable_text
from trackway.core.sources import SourceInfo
from trackway.db import queries
from trackway.db.models import events, profiles
from trackway.dialects import tracker_script
from trackway.errors import NotFound
from trackway.responses import json_response
from trackway.services import Services

SHOWN_EVENTS = 20
_PAGE = files("trackway").joinpath("static", "demo.html").read_text(encoding="utf-8")

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)

#: An id in the demo's query: NUL in it reached PostgreSQL (a 500) before it was a 422.
DemoId = Annotated[str, Query(max_length=128), AfterValidator(storable_text)]
SourceParam = Annotated[
    str, Query(max_length=128, description="Id of a tracardi source."), AfterValidator(storable_text)
]


async def _demo_source(services: Services, source_id: str) -> SourceInfo:
    """The source the demo runs for; any refusal is the same 404 a disabled demo gives."""
    if not services.settings.demo:
        raise NotFound()
    info = await services.sources.get(source_id)
    if info is None or not info.enabled or info.dialect != "tracardi":
        raise NotFound(
            f"No enabled tracardi source {source_id!r}. Create one with "
            "`trackway sources create --dialect tracardi --name demo` and open /demo?source=<its id>."
        )
    return info


@router.get("")
async def demo_page(
    request: Request,
    services: Services,
    source: SourceParam,
) -> Response:
    info = await _demo_source(services, source)
    api_url = str(request.base_url).rstrip("/")
    page = _PAGE.replace("{{snippet}}", tracker_script.snippet(api_url=api_url, source_id=info.id))
    # json.dumps and "<" escaped: the id is safe to place inside the page's <script>.
    page = page.replace("{{source_json}}", json.dumps(info.id).replace("<", "\\u003c"))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/events")
async def demo_events(
    services: Services,
    source: DemoId,
    profile: DemoId,
) -> Response:
    """The newest events of one profile in one source, for the demo page to show."""
    info = await _demo_source(services, source)
    async with services.uow.read() as db:
        live = await queries.canonical_profile_id(db, profile)
        if live is None:
            raise NotFound(f"no profile {profile!r}")
        visits = (await db.execute(select(profiles.c.visits).where(profiles.c.id == live))).scalar_one()
        mine = (events.c.profile_id == live) & (events.c.source_id == info.id)
        total = (await db.execute(select(func.count()).select_from(events).where(mine))).scalar_one()
        rows = (
            await db.execute(
                select(events.c.id, events.c.type, events.c.time, events.c.properties)
                .where(mine)
                .order_by(events.c.time.desc(), events.c.id.desc())
                .limit(SHOWN_EVENTS)
            )
        ).all()
    items: list[dict[str, Any]] = [
        {"id": row.id, "type": row.type, "time": row.time.isoformat(), "properties": row.properties}
        for row in rows
    ]
    return json_response(
        {"profile": {"id": live, "visits": visits}, "count": total, "events": items},
        headers={"Cache-Control": "no-store"},
    )
