"""Read API: profiles, their events page by page, sessions, lookup by identity, probes."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import ADMIN
from tests.helpers import tracker_payload
from trackway.core import identity
from trackway.core.batch import IdentityRef, IngestBatch, RequestMeta, SourceRef
from trackway.core.ingest import ingest

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


async def test_unknown_ids_are_404_with_json(client) -> None:
    for url in ("/api/profiles/nope", "/api/profiles/nope/events", "/api/sessions/nope"):
        response = await client.get(url, headers=ADMIN)
        assert response.status_code == 404, url
        assert "nope" in response.json()["detail"]


async def test_events_are_time_ordered_and_paginated(client, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-page", events=7)
    for i, event in enumerate(payload["events"]):
        event["time"] = f"2024-06-21T12:00:0{6 - i}Z"  # sent newest first
    profile_id = (await client.post("/track", json=payload)).json()["profile"]["id"]
    seen = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN, params=params)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["properties"]["n"] for e in seen] == [6, 5, 4, 3, 2, 1, 0]
    assert [e["time"] for e in seen] == sorted(e["time"] for e in seen)
    assert set(seen[0]) == {
        "id",
        "type",
        "time",
        "received_at",
        "properties",
        "context",
        "session_id",
        "source_id",
    }


async def test_limit_and_cursor_are_validated(client, tracardi_source) -> None:
    profile_id = (await client.post("/track", json=tracker_payload(SOURCE, session="v"))).json()["profile"][
        "id"
    ]
    for params, loc in (
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
    ):
        response = await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN, params=params)
        assert response.status_code == 422
        assert ["query", loc] in [e["loc"] for e in response.json()["detail"]]


async def test_find_profile_by_identity(client, uow, tracardi_source) -> None:
    email = IdentityRef("email_sha256", identity.email_sha256("Ann@Example.com"))
    person = IdentityRef("person", "42", scope=SOURCE)
    result = await ingest(
        IngestBatch(
            source=SourceRef(SOURCE, "tracardi"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            identities=[person, email],
        ),
        uow,
    )
    for query in (
        {"identity": f"email_sha256:{email.value}"},
        {"identity": "email: ann@example.com "},
        {"identity": "person:42", "source": SOURCE},
    ):
        items = (await client.get("/api/profiles", headers=ADMIN, params=query)).json()["items"]
        assert [p["id"] for p in items] == [result.profile_id], query
    assert (await client.get("/api/profiles", headers=ADMIN, params={"identity": "person:99"})).json() == {
        "items": []
    }
    bad = await client.get("/api/profiles", headers=ADMIN, params={"identity": "no-colon"})
    assert bad.status_code == 422
    profile = (await client.get(f"/api/profiles/{result.profile_id}", headers=ADMIN)).json()
    assert {(i["kind"], i["value"]) for i in profile["identities"]} == {
        ("person", "42"),
        ("email_sha256", email.value),
    }


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_openapi_docs_are_served(client) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/track" in spec["paths"]
    assert "/api/profiles/{profile_id}/events" in spec["paths"]
