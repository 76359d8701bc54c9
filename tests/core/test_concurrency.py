"""Races of the normal case: many first requests of one new visitor arrive at once."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ADMIN, count
from tests.helpers import tracker_payload

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
PARALLEL = 50

# Each race runs with group commit (requests share transactions) and without it (each
# request its own transaction, racing the others in the database, as several workers do).
pytestmark = pytest.mark.parametrize(
    "settings_overrides", [{"group_commit": True}, {"group_commit": False}], ids=["grouped", "per-request"]
)


async def test_parallel_first_requests_of_one_new_session_make_one_profile(
    client, uow, tracardi_source
) -> None:
    payloads = [tracker_payload(SOURCE, session="new-visitor", events=2) for _ in range(PARALLEL)]
    responses = await asyncio.gather(*(client.post("/track", json=p) for p in payloads))
    assert [r.status_code for r in responses] == [200] * PARALLEL, [r.text for r in responses][:3]
    profile_ids = {r.json()["profile"]["id"] for r in responses}
    session_ids = {r.json()["session"]["id"] for r in responses}
    assert len(profile_ids) == 1
    assert len(session_ids) == 1
    assert await count(uow, "profiles") == 1
    assert await count(uow, "sessions") == 1
    assert await count(uow, "events") == PARALLEL * 2
    (profile_id,) = profile_ids
    profile = (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()
    assert profile["visits"] == 1
    (session_id,) = session_ids
    session = (await client.get(f"/api/sessions/{session_id}", headers=ADMIN)).json()
    assert session["event_count"] == PARALLEL * 2


async def test_parallel_requests_with_an_unknown_profile_id_converge(client, uow, tracardi_source) -> None:
    payloads = [
        tracker_payload(SOURCE, session="lost-visitor", profile="stale-id", events=1) for _ in range(PARALLEL)
    ]
    responses = await asyncio.gather(*(client.post("/track", json=p) for p in payloads))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["profile"]["id"] for r in responses}) == 1
    assert await count(uow, "profiles") == 1
    assert await count(uow, "events") == PARALLEL


async def test_parallel_retries_of_one_payload_store_its_events_once(client, uow, tracardi_source) -> None:
    first = await client.post("/track", json=tracker_payload(SOURCE, session="warm"))
    payload = tracker_payload(SOURCE, session="warm", profile=first.json()["profile"]["id"])
    responses = await asyncio.gather(*(client.post("/track", json=payload) for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert sum(len(r.json()["events"]) for r in responses) == 3
    assert await count(uow, "events") == 6


async def test_parallel_new_sessions_of_one_profile_count_every_visit(client, uow, tracardi_source) -> None:
    profile_id = (await client.post("/track", json=tracker_payload(SOURCE, session="v0"))).json()["profile"][
        "id"
    ]
    visits = 20
    responses = await asyncio.gather(
        *(
            client.post("/track", json=tracker_payload(SOURCE, session=f"v{i}", profile=profile_id))
            for i in range(1, visits + 1)
        )
    )
    assert {r.status_code for r in responses} == {200}
    profile = (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()
    assert profile["visits"] == visits + 1
    assert await count(uow, "sessions") == visits + 1


async def test_parallel_multi_person_batches_lock_in_one_order(uow, tracardi_source, caplog) -> None:
    """Tracify-style requests naming the same people in different orders wait, never deadlock."""
    import logging
    import random
    from datetime import UTC, datetime

    from trackway.core.batch import EventIn, IdentityRef, IngestBatch, RequestMeta, SourceRef
    from trackway.core.ingest import ingest_many

    people = [IdentityRef("person", f"p{i}", scope=SOURCE) for i in range(4)]

    def request(seed: int) -> list[IngestBatch]:
        order = people[:]
        random.Random(seed).shuffle(order)
        return [
            IngestBatch(
                source=SourceRef(SOURCE, "tracardi"),
                meta=RequestMeta(received_at=datetime.now(UTC)),
                identities=[ref],
                events=[EventIn("e")],
            )
            for ref in order
        ]

    await ingest_many(request(0), uow)  # every person exists: the races are on their rows
    with caplog.at_level(logging.INFO, logger="trackway.core.ingest"):
        results = await asyncio.gather(*(ingest_many(request(seed), uow) for seed in range(1, 21)))
    assert all(len(r) == 4 for r in results)
    assert await count(uow, "events") == 4 * 21
    assert not [r for r in caplog.records if "retry" in r.getMessage()]
