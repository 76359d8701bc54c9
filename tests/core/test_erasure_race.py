"""An erasure racing requests for the same person: every event is erased with the person or
suppressed (or, without suppression, starts a new profile holding nothing erased): never a
resurrected profile. The job runs in small batches while the requests arrive in parallel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, count, counts
from tests.helpers import tracker_payload
from trackway.core import erasure
from trackway.core import sources as source_service
from trackway.db.models import events, profiles
from trackway.db.uow import SqlUnitOfWork

SID = "tracktor-race"
WEB = "web-race"
PARALLEL = 40

pytestmark = pytest.mark.parametrize("suppress", [True, False], ids=["suppress", "no-suppress"])


@pytest.fixture(params=[True, False], ids=["grouped", "per-request"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"group_commit": request.param, "erasure_interval": 0, "retention_interval": 0}


@pytest.fixture
async def sources(uow: SqlUnitOfWork) -> None:
    await source_service.create_source(uow, name="app", dialect="tracktor", source_id=SID)
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id=WEB)


async def person_ids(uow: SqlUnitOfWork) -> set[str]:
    async with uow.read() as db:
        return set((await db.execute(select(profiles.c.id))).scalars())


async def phases(uow: SqlUnitOfWork) -> dict[str, set[str]]:
    """Each stored event's ``phase`` property, by profile."""
    found: dict[str, set[str]] = {}
    async with uow.read() as db:
        for row in await db.execute(select(events.c.profile_id, events.c.properties)):
            found.setdefault(row.profile_id, set()).add(str((row.properties or {}).get("phase")))
    return found


async def race(uow: SqlUnitOfWork, client: Any, body: dict[str, Any], requests: list[Any]) -> None:
    """Ask for the erasure, then run its job (batches of 3 events) and the requests at once."""
    response = await client.post("/api/erasures", json=body, headers=ADMIN)
    assert response.status_code == 202

    async def job() -> None:
        for _ in range(200):  # bounded: a step, a pause for the requests, until it is done
            if await erasure.run_once(uow, batch=3) is None:
                return
            await asyncio.sleep(0)

    results = await asyncio.gather(job(), *requests)
    assert all(r.status_code == 200 for r in results[1:]), [
        r.text for r in results[1:] if r.status_code != 200
    ]
    await erasure.run_pass(uow)
    done = (await client.get(f"/api/erasures/{response.json()['id']}", headers=ADMIN)).json()
    assert done["state"] == "done"


async def test_tracktor_person_erased_while_its_requests_arrive(client, uow, sources, suppress) -> None:
    def track(phase: str, n: int) -> Any:
        data = json.dumps({"phase": phase, "n": n})
        return client.get("/track", params={"sid": SID, "id": "42", "action": "view", "data": data})

    await client.get(
        "/set", params={"sid": SID, "id": "42", "data": json.dumps({"email": "ann@example.com"})}
    )
    for n in range(12):
        assert (await track("before", n)).status_code == 200
    erased = await person_ids(uow)
    assert len(erased) == 1

    await race(
        uow,
        client,
        {"identity": "person:42", "source": SID, "suppress": suppress},
        [track("race", n) for n in range(PARALLEL)],
    )
    await asyncio.gather(*(track("after", n) for n in range(5)))

    left = await person_ids(uow)
    assert not left & erased  # the erased profile never comes back
    by_profile = await phases(uow)
    if suppress:
        assert await counts(uow) == {
            "events": 0,
            "carts": 0,
            "sessions": 0,
            "identities": 0,
            "profile_merges": 0,
            "profiles": 0,
            "sources": 2,
        }
    else:
        # Requests after the erasure start one new profile, holding nothing from before it.
        assert len(left) == 1
        assert "before" not in by_profile.get(next(iter(left)), set())
        assert by_profile.keys() <= left
        assert await count(uow, "identities") == 1  # person 42 again; not the erased email


async def test_tracardi_profile_erased_while_its_tracker_sends(client, uow, sources, suppress) -> None:
    first = await client.post("/track", json=tracker_payload(WEB, session="visit-1", events=4))
    profile_id = first.json()["profile"]["id"]

    def send(n: int) -> Any:
        payload = tracker_payload(WEB, session="visit-1", profile=profile_id, events=2)
        for event in payload["events"]:
            event["properties"]["phase"] = "race"
        return client.post("/track", json=payload)

    await race(
        uow, client, {"profile_id": profile_id, "suppress": suppress}, [send(n) for n in range(PARALLEL)]
    )

    left = await person_ids(uow)
    assert profile_id not in left
    by_profile = await phases(uow)
    assert "None" not in {p for phases_ in by_profile.values() for p in phases_}  # none of the first 4
    if suppress:
        assert left == set() and by_profile == {}
        answer = await send(0)
        assert answer.json()["profile"]["id"] == profile_id  # answered as usual, stored nowhere
        assert await count(uow, "events") == 0
    else:
        assert len(left) <= 1
        assert by_profile.keys() <= left
