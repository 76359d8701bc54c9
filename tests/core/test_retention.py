"""Retention (issue 17): ``retention_days`` per source, the job that deletes older events in
bounded transactions, claimed in the database; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, count
from trackway.core import retention
from trackway.core.batch import EventIn, IngestBatch, RequestMeta, SourceRef
from trackway.core.ingest import ingest
from trackway.db.engine import make_engine
from trackway.db.models import events, job_state
from trackway.db.uow import SqlUnitOfWork

KEEP = "keeps-all"
SHORT = "week"
LONG = "year"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"erasure_interval": 0, "retention_interval": 0}


@pytest.fixture
async def sources(client) -> None:
    for source_id, days in ((KEEP, None), (SHORT, 7), (LONG, 365)):
        body = {"name": source_id, "dialect": "tracify", "id": source_id}
        if days is not None:
            body["retention_days"] = days
        response = await client.post("/api/sources", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        assert response.json()["retention_days"] == days


async def store(uow: SqlUnitOfWork, source_id: str, ages_in_days: list[float], tag: str = "") -> None:
    now = datetime.now(UTC)
    batch = IngestBatch(
        source=SourceRef(source_id, "tracify"),
        meta=RequestMeta(received_at=now),
        events=[
            EventIn(type="view", time=now - timedelta(days=age), properties={"age": age, "tag": tag})
            for age in ages_in_days
        ],
    )
    await ingest(batch, uow)


async def ages(uow: SqlUnitOfWork, source_id: str) -> list[float]:
    async with uow.read() as db:
        rows = await db.execute(select(events.c.properties).where(events.c.source_id == source_id))
        return sorted(row.properties["age"] for row in rows)


async def test_retention_days_through_the_api(client, sources) -> None:
    patched = await client.patch(f"/api/sources/{SHORT}", json={"retention_days": 30}, headers=ADMIN)
    assert patched.json()["retention_days"] == 30
    listed = (await client.get("/api/sources", headers=ADMIN)).json()["items"]
    assert {s["id"]: s["retention_days"] for s in listed} == {KEEP: None, SHORT: 30, LONG: 365}
    off = await client.patch(f"/api/sources/{SHORT}", json={"retention_days": None}, headers=ADMIN)
    assert off.json()["retention_days"] is None
    for bad in (0, 3651, "x", 1.5, True):
        response = await client.patch(f"/api/sources/{SHORT}", json={"retention_days": bad}, headers=ADMIN)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][:2] == ["body", "retention_days"]
        created = await client.post(
            "/api/sources", json={"name": "n", "dialect": "tracardi", "retention_days": bad}, headers=ADMIN
        )
        assert created.status_code == 422 and created.json()["detail"][0]["loc"][:2] == [
            "body",
            "retention_days",
        ]


async def test_a_pass_deletes_each_sources_older_events_in_small_batches(client, uow, sources) -> None:
    old = [8, 10, 30, 400, 20000]
    await store(uow, SHORT, [*old, 1, 6.9])
    await store(uow, LONG, [*old, 1, 6.9])
    await store(uow, KEEP, [*old, 1, 6.9])
    deleted = await retention.run_pass(uow, interval=3600, limit=2)
    assert deleted == 5 + 2  # the week source's five, the year source's 400 and 20000 days
    assert await ages(uow, SHORT) == [1, 6.9]
    assert await ages(uow, LONG) == [1, 6.9, 8, 10, 30]
    assert await ages(uow, KEEP) == sorted([*old, 1, 6.9])
    # The pass is over; the next one is due in an hour.
    async with uow.read() as db:
        state = (await db.execute(select(job_state))).one()
    assert state.cursor_time is None
    assert state.next_run_at > datetime.now(UTC) + timedelta(minutes=59)
    await store(uow, SHORT, [9])
    assert await retention.run_pass(uow, interval=3600) == 0  # not due
    assert await retention.run_pass(uow, interval=3600, due_only=False) == 1  # the CLI's: now


async def test_events_at_the_cursor_and_new_old_events_are_found_by_the_next_pass(
    client, uow, sources
) -> None:
    await store(uow, SHORT, [10] * 5)
    step = await retention.run_once(uow, interval=0, limit=2)
    assert step == retention.Step(deleted=2, more=True)
    await store(uow, SHORT, [50])  # a late event older than the cursor
    await retention.run_pass(uow, interval=0, limit=2)
    assert await retention.run_pass(uow, interval=0, limit=2) == 1
    assert await count(uow, "events") == 0


async def test_no_retention_anywhere_walks_nothing(client, uow, sources) -> None:
    for source_id in (SHORT, LONG):
        await client.patch(f"/api/sources/{source_id}", json={"retention_days": None}, headers=ADMIN)
    await store(uow, KEEP, [100, 200])
    assert await retention.run_pass(uow) == 0
    assert await count(uow, "events") == 2


async def test_processes_share_a_pass_while_ingest_goes_on(client, uow, sources, settings) -> None:
    """Three "processes" (engines of their own) run the pass at once while events arrive: each
    old event is deleted once, nothing else, and every request is answered."""
    await store(uow, SHORT, [10 + n / 100 for n in range(300)], tag="old")
    await store(uow, KEEP, [10 + n / 100 for n in range(100)], tag="kept")
    engines = [make_engine(settings) for _ in range(3)]
    try:
        uows = [SqlUnitOfWork(engine) for engine in engines]

        async def requests() -> None:
            for n in range(20):
                await store(uow, SHORT, [0.5], tag=f"new-{n}")
                await asyncio.sleep(0)

        results = await asyncio.gather(
            *(retention.run_pass(u, interval=3600, limit=25) for u in uows), requests()
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(results[:3]) == 300
    assert await count(uow, "events", source_id=SHORT) == 20
    assert await count(uow, "events", source_id=KEEP) == 100


@pytest.mark.parametrize("settings_overrides", [{"retention_interval": 0.2, "erasure_interval": 0}])
async def test_the_servers_job_runs_passes(client, uow, sources) -> None:
    await store(uow, SHORT, [30, 1])
    for _ in range(100):  # bounded: up to 10 s
        if await count(uow, "events") == 1:
            break
        await asyncio.sleep(0.1)
    assert await ages(uow, SHORT) == [1]
