"""Segments: CRUD, members now (real time, through the collector route), preview, the profile view."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tests.api.test_people import SOURCE, person
from tests.conftest import ADMIN
from tests.helpers import tracker_payload
from trackway.core.merge import merge_profiles

BUYERS = {
    "event": "purchase",
    "within_days": 60,
    "where": [{"property": "sku", "op": "eq", "value": "Article2"}],
}
ADULTS = {"property": "age", "op": "gte", "value": 18}


async def create(client, name: str, condition: Any) -> dict[str, Any]:
    response = await client.post("/api/segments", headers=ADMIN, json={"name": name, "condition": condition})
    assert response.status_code == 201, response.text
    return response.json()


async def members(client, segment_id: str, **params: Any) -> tuple[int, list[str]]:
    response = await client.get(f"/api/segments/{segment_id}/people", headers=ADMIN, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["size"], [item["id"] for item in body["items"]]


async def test_segment_crud(client) -> None:
    made = await create(client, "Adults", ADULTS)
    assert set(made) == {"id", "name", "condition", "created_at", "updated_at"}
    assert made["condition"] == ADULTS
    assert (await client.get(f"/api/segments/{made['id']}", headers=ADMIN)).json() == made
    other = await create(client, "Buyers", BUYERS)
    listed = (await client.get("/api/segments", headers=ADMIN)).json()["items"]
    assert [s["id"] for s in listed] == [made["id"], other["id"]]

    renamed = await client.patch(f"/api/segments/{made['id']}", headers=ADMIN, json={"name": "Grown-ups"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Grown-ups" and renamed.json()["condition"] == ADULTS
    assert renamed.json()["updated_at"] >= made["updated_at"]
    changed = await client.patch(
        f"/api/segments/{made['id']}", headers=ADMIN, json={"condition": {"not": ADULTS}}
    )
    assert changed.json()["condition"] == {"not": ADULTS}

    assert (await client.delete(f"/api/segments/{made['id']}", headers=ADMIN)).status_code == 204
    for method in ("get", "delete"):
        response = await client.request(method, f"/api/segments/{made['id']}", headers=ADMIN)
        assert response.status_code == 404
    assert (
        await client.patch(f"/api/segments/{made['id']}", headers=ADMIN, json={"name": "x"})
    ).status_code == 404
    assert (await client.get(f"/api/segments/{made['id']}/people", headers=ADMIN)).status_code == 404
    assert [s["id"] for s in (await client.get("/api/segments", headers=ADMIN)).json()["items"]] == [
        other["id"]
    ]
    assert (await client.get("/api/segments")).status_code == 401


async def test_bad_segments_are_422_naming_the_field(client) -> None:
    for body, loc in (
        (
            {"name": "x", "condition": {"property": "a", "op": "like", "value": 1}},
            ["body", "condition", "op"],
        ),
        (
            {"name": "x", "condition": {"all": [{"event": "e", "ever": True}]}},
            ["body", "condition", "all", 0, "ever"],
        ),
        ({"name": "", "condition": ADULTS}, ["body", "name"]),
        ({"name": "x"}, ["body", "condition"]),
        ({"name": "x", "condition": ADULTS, "colour": 1}, ["body", "colour"]),
    ):
        response = await client.post("/api/segments", headers=ADMIN, json=body)
        assert response.status_code == 422, body
        assert loc in [e["loc"] for e in response.json()["detail"]], response.json()
    made = await create(client, "ok", ADULTS)
    bad = await client.patch(f"/api/segments/{made['id']}", headers=ADMIN, json={"condition": {"nope": 1}})
    assert bad.status_code == 422
    assert ["body", "condition"] in [e["loc"] for e in bad.json()["detail"]]
    preview = await client.post(
        "/api/segments/preview", headers=ADMIN, json={"condition": {"not": {"not": 3}}}
    )
    assert preview.status_code == 422
    assert ["body", "condition", "not", "not"] in [e["loc"] for e in preview.json()["detail"]]
    deep: dict[str, Any] = ADULTS
    for _ in range(10):
        deep = {"any": [deep]}
    assert (
        await client.post("/api/segments", headers=ADMIN, json={"name": "deep", "condition": deep})
    ).status_code == 422
    cursor = await client.get(f"/api/segments/{made['id']}/people", headers=ADMIN, params={"cursor": "%%"})
    assert cursor.status_code == 422


def purchase(session: str, sku: str) -> dict[str, Any]:
    payload = tracker_payload(SOURCE, session=session, events=1)
    payload["events"] = [{"type": "purchase", "properties": {"sku": sku}, "id": str(uuid.uuid4())}]
    return payload


async def test_membership_changes_in_real_time(client, tracardi_source) -> None:
    """Through the collector route: a person joins the segment with the event that makes them match."""
    segment = await create(client, "Bought Article2", BUYERS)
    visitor = (await client.post("/track", json=tracker_payload(SOURCE, session="rt"))).json()["profile"][
        "id"
    ]
    assert await members(client, segment["id"]) == (0, [])
    profile = (await client.get(f"/api/profiles/{visitor}", headers=ADMIN)).json()
    assert profile["segments"] == []

    await client.post("/track", json=purchase("rt", "Article1"))
    assert await members(client, segment["id"]) == (0, [])

    await client.post("/track", json=purchase("rt", "Article2"))
    assert await members(client, segment["id"]) == (1, [visitor])
    profile = (await client.get(f"/api/profiles/{visitor}", headers=ADMIN)).json()
    assert profile["segments"] == [{"id": segment["id"], "name": "Bought Article2"}]

    # The condition changes: membership with it, at once.
    await client.patch(f"/api/segments/{segment['id']}", headers=ADMIN, json={"condition": {"not": BUYERS}})
    assert await members(client, segment["id"]) == (0, [])
    assert (await client.get(f"/api/profiles/{visitor}", headers=ADMIN)).json()["segments"] == []


async def test_merged_profiles_are_never_members(client, uow, tracardi_source) -> None:
    now = datetime.now(UTC)
    a = await person(uow, "a", traits={"age": 30}, events=(("purchase", {"sku": "Article2"}, now),))
    b = await person(uow, "b", traits={"age": 40}, events=(("purchase", {"sku": "Article2"}, now),))
    buyers = await create(client, "Buyers", BUYERS)
    adults = await create(client, "Adults", ADULTS)
    twice = await create(client, "Twice", {**BUYERS, "min_count": 2})
    assert (await members(client, buyers["id"]))[0] == 2
    assert await members(client, twice["id"]) == (0, [])
    async with uow.transaction() as db:
        await merge_profiles(db, from_id=b, into_id=a, reason="test", source_id=SOURCE, now=now)
    assert await members(client, buyers["id"]) == (1, [a])
    assert await members(client, adults["id"]) == (1, [a])
    assert await members(client, twice["id"]) == (1, [a])  # b's purchase counts for its survivor
    view = (await client.get(f"/api/profiles/{b}", headers=ADMIN)).json()
    assert view["id"] == a
    assert [s["name"] for s in view["segments"]] == ["Buyers", "Adults", "Twice"]


async def test_preview_and_paged_members(client, uow, tracardi_source) -> None:
    ids = [await person(uow, f"p{i}", traits={"age": 20 + i}) for i in range(7)]
    await person(uow, "kid", traits={"age": 9})
    preview = await client.post(
        "/api/segments/preview", headers=ADMIN, json={"condition": ADULTS, "limit": 3}
    )
    assert preview.status_code == 200
    assert preview.json()["size"] == 7 and len(preview.json()["items"]) == 3
    assert (await client.get("/api/segments", headers=ADMIN)).json()["items"] == []  # nothing saved

    segment = await create(client, "Adults", ADULTS)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "sort": "created_at", "order": "asc", **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/api/segments/{segment['id']}/people", headers=ADMIN, params=params)
        body = response.json()
        assert body["size"] == 7 and body["segment"] == {"id": segment["id"], "name": "Adults"}
        seen.extend(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def test_a_stored_condition_that_no_longer_compiles_is_a_409(client, uow) -> None:
    """A condition saved by an older Trackway (or edited in the database) is never a 500."""
    from sqlalchemy import update

    from trackway.db.models import segments

    created = await client.post(
        "/api/segments", headers=ADMIN, json={"name": "old", "condition": {"property": "a", "op": "exists"}}
    )
    segment_id = created.json()["id"]
    async with uow.transaction() as db:
        await db.execute(
            update(segments)
            .where(segments.c.id == segment_id)
            .values(condition={"property": "a", "op": "near"})
        )
    members = await client.get(f"/api/segments/{segment_id}/people", headers=ADMIN)
    assert members.status_code == 409, members.text
    assert "PATCH" in members.json()["detail"]
    fixed = await client.patch(
        f"/api/segments/{segment_id}", headers=ADMIN, json={"condition": {"property": "a", "op": "exists"}}
    )
    assert fixed.status_code == 200
    assert (await client.get(f"/api/segments/{segment_id}/people", headers=ADMIN)).status_code == 200
