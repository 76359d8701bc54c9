"""Erasure, suppression and export (issue 17), wire to rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, ADMIN_TOKEN, count, counts
from tests.helpers import tracker_payload
from trackway.core import erasure
from trackway.core import sources as source_service
from trackway.core.batch import EventIn, IdentityRef, IngestBatch, RequestMeta, SourceRef
from trackway.core.identity import email_sha256
from trackway.core.ingest import ingest_many
from trackway.db.erasure import delete_person, key_hash, read_others_in_visits, suppress
from trackway.db.models import erasures, profiles, suppressions
from trackway.db.uow import SqlUnitOfWork

SID = "tracktor-shop"
WEB = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
EMPTY = {"events": 0, "carts": 0, "sessions": 0, "identities": 0, "profile_merges": 0, "profiles": 0}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """The job runs when a test asks (``erasure.run_pass``), not on a clock."""
    return {"erasure_interval": 0, "retention_interval": 0}


@pytest.fixture
async def sources(uow: SqlUnitOfWork) -> None:
    await source_service.create_source(uow, name="app", dialect="tracktor", source_id=SID)
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id=WEB)


async def tracktor(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    fields = {k: json.dumps(v) if k == "data" else v for k, v in params.items()}
    response = await client.get(path, params={"sid": SID, **fields})
    assert response.status_code == 200, response.text
    return response


async def ann(client: httpx.AsyncClient) -> str:
    """Ann: an anonymous visitor with events and a cart, then identified (an alias merges the
    anonymous profile into hers), with an email; her profile id."""
    await tracktor(client, "/track", id="anon-1", action="page-view", data={"path": "/"})
    await tracktor(
        client, "/track", id="anon-1", action="setCart", data={"products": [{"name": "p1", "price": 5}]}
    )
    await tracktor(client, "/set", id="42", data={"email": "ann@example.com", "name": "Ann"})
    await tracktor(client, "/alias", srcid="anon-1", destid="42")
    await tracktor(client, "/track", id="42", action="purchase", data={"total": 5})
    found = (
        await client.get("/api/profiles", params={"identity": "person:42", "source": SID}, headers=ADMIN)
    ).json()["items"]
    return str(found[0]["id"])


async def bob(client: httpx.AsyncClient) -> str:
    await tracktor(client, "/set", id="7", data={"email": "bob@example.com"})
    response = await tracktor(client, "/track", id="7", action="page-view", data={})
    return str(response.json()["profile"]["id"])


async def erase(client: httpx.AsyncClient, uow: SqlUnitOfWork, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/erasures", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    assert response.headers["location"] == f"/api/erasures/{response.json()['id']}"
    await erasure.run_pass(uow)
    done = await client.get(f"/api/erasures/{response.json()['id']}", headers=ADMIN)
    assert done.status_code == 200
    assert done.json()["state"] == "done"
    return dict(done.json())


async def test_erasure_by_profile_removes_the_person_and_keeps_an_audit_without_personal_data(
    client, uow, sources
) -> None:
    profile_id = await ann(client)
    other = await bob(client)
    before = await counts(uow)
    assert before["profile_merges"] == 1  # the anonymous profile was merged into Ann's
    bob_rows = {"events": 1, "sessions": 1, "identities": 2, "profiles": 1}

    done = await erase(client, uow, {"profile_id": profile_id})

    after = await counts(uow)
    assert after == {**EMPTY, "sources": 2, **bob_rows}
    assert (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).status_code == 404
    assert (await client.get(f"/api/profiles/{other}", headers=ADMIN)).status_code == 200
    assert done["counts"] == {
        "profiles": 2,
        "identities": before["identities"] - 2,
        "sessions": before["sessions"] - 1,
        "events": before["events"] - 1,
        "carts": 1,
        "merges": 1,
    }
    assert done["subject"] == "profile"
    assert done["suppress"] is False
    assert done["requested_by"].startswith("token:")
    hashes = {h["hash"] for h in done["key_hashes"]}
    assert key_hash("", "email_sha256", email_sha256("ann@example.com")) in hashes
    assert key_hash(SID, "person", "42") in hashes
    assert key_hash("", "profile", profile_id) in hashes
    # The audit row: no profile id, no person id, no email, no token.
    async with uow.read() as db:
        (row,) = (await db.execute(select(erasures))).all()
    stored = json.dumps([str(v) for v in row._mapping.values()])
    for secret in (profile_id, "ann@example.com", email_sha256("ann@example.com"), '"42"', ADMIN_TOKEN):
        assert secret not in stored
    assert row.target_profile_id is None
    # Not suppressed: Ann comes back as a new person, with none of the erased data.
    await tracktor(client, "/track", id="42", action="page-view", data={})
    again = (
        await client.get("/api/profiles", params={"identity": "person:42", "source": SID}, headers=ADMIN)
    ).json()["items"]
    assert len(again) == 1 and again[0]["id"] != profile_id
    assert again[0]["traits"] == {} and again[0]["carts"] == []
    assert await count(uow, "events", profile_id=again[0]["id"]) == 1


async def test_erasure_by_merged_profile_id_or_identity_erases_the_whole_person(client, uow, sources) -> None:
    profile_id = await ann(client)
    async with uow.read() as db:
        merged = (await db.execute(select(erasures.c.id))).all()
    assert merged == []
    done = await erase(client, uow, {"identity": "email:Ann@Example.com "})
    assert done["subject"] == "identity"
    assert done["counts"]["profiles"] == 2
    assert done["key_hashes"][0] == {
        "kind": "email_sha256",
        "scope": "",
        "hash": key_hash("", "email_sha256", email_sha256("ann@example.com")),
    }
    assert await count(uow, "profiles") == 0
    assert (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).status_code == 404


async def test_erasure_of_a_merged_id_follows_merged_into(client, uow, sources) -> None:
    await ann(client)
    async with uow.read() as db:
        (loser,) = (await db.execute(select(profiles.c.id).where(profiles.c.merged_into.is_not(None)))).all()
    done = await erase(client, uow, {"profile_id": loser.id})
    assert done["counts"]["profiles"] == 2
    assert await count(uow, "profiles") == 0
    assert await count(uow, "events") == 0


async def test_person_identity_with_source(client, uow, sources) -> None:
    await ann(client)
    done = await erase(client, uow, {"identity": "person:42", "source": SID, "suppress": True})
    assert done["counts"]["profiles"] == 2
    assert done["suppress"] is True


async def test_events_are_deleted_in_batches_over_several_transactions(client, uow, sources) -> None:
    profile_id = await ann(client)
    events = await count(uow, "events", profile_id=profile_id)
    response = await client.post("/api/erasures", json={"profile_id": profile_id}, headers=ADMIN)
    erasure_id = response.json()["id"]
    assert await erasure.run_once(uow, batch=2) == erasure_id
    running = (await client.get(f"/api/erasures/{erasure_id}", headers=ADMIN)).json()
    assert running["state"] == "running"
    assert running["counts"]["events"] == 2
    assert await count(uow, "profiles") == 2  # the person is still there until the last step
    steps = await erasure.run_pass(uow, batch=2)
    assert steps == (events - 2) // 2 + 1
    assert await erasure.run_once(uow) is None
    done = (await client.get(f"/api/erasures/{erasure_id}", headers=ADMIN)).json()
    assert done["state"] == "done" and done["counts"]["events"] == events
    listed = (await client.get("/api/erasures", headers=ADMIN)).json()["items"]
    assert [item["id"] for item in listed] == [erasure_id]


async def test_suppressed_keys_are_answered_and_store_nothing(client, uow, sources) -> None:
    profile_id = await ann(client)
    visitor = await client.post("/track", json=tracker_payload(WEB, session="s-1", events=2))
    web_profile = visitor.json()["profile"]["id"]
    await erase(client, uow, {"profile_id": profile_id, "suppress": True})
    await erase(client, uow, {"profile_id": web_profile, "suppress": True})
    assert await count(uow, "profiles") == 0
    listed = (await client.get("/api/suppressions", headers=ADMIN)).json()["items"]
    kinds = sorted(item["kind"] for item in listed)
    assert kinds == ["email_sha256", "person", "person", "profile", "profile", "profile"]
    assert all('"42"' not in json.dumps(item) and profile_id not in json.dumps(item) for item in listed)

    # Each of Ann's strong keys, alone or with a new one: 200 as usual, nothing stored.
    await tracktor(client, "/track", id="42", action="page-view", data={})
    await tracktor(client, "/track", id="anon-1", action="page-view", data={})
    await tracktor(client, "/set", id="new-person", data={"email": "ANN@example.com"})
    await tracktor(client, "/alias", srcid="anon-2", destid="42")
    # Tracardi's tracker sends back the erased profile id: answered with it, nothing stored.
    hinted = await client.post(
        "/track", json=tracker_payload(WEB, session="s-2", profile=web_profile, events=3)
    )
    assert hinted.status_code == 200
    assert hinted.json()["profile"]["id"] == web_profile
    assert len(hinted.json()["events"]) == 3
    assert await counts(uow) == {**EMPTY, "sources": 2}

    # Someone else is stored as usual.
    await tracktor(client, "/track", id="43", action="page-view", data={})
    assert await count(uow, "profiles") == 1

    # Lifted: the person id is stored again (the other keys stay suppressed).
    person = next(
        item for item in listed if item["kind"] == "person" and item["hash"] == key_hash(SID, "person", "42")
    )
    assert (await client.delete(f"/api/suppressions/{person['id']}", headers=ADMIN)).status_code == 204
    assert (await client.delete(f"/api/suppressions/{person['id']}", headers=ADMIN)).status_code == 404
    await tracktor(client, "/track", id="42", action="page-view", data={})
    assert await count(uow, "profiles") == 2
    await tracktor(client, "/set", id="42", data={"email": "ann@example.com"})
    assert await count(uow, "identities") == 2  # person 42 and 43: not the suppressed email


async def test_suppression_in_a_shared_group_drops_only_that_batch(uow, sources) -> None:
    """Group commit: a suppressed batch and others in one transaction; only it is dropped."""
    async with uow.transaction() as db:
        await suppress(db, [(SID, "person", "gone")], None, datetime.now(UTC))

    def batch(person: str) -> IngestBatch:
        return IngestBatch(
            source=SourceRef(SID, "tracktor"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            events=[EventIn(type="page-view")],
            identities=[IdentityRef("person", person, scope=SID)],
        )

    results = await ingest_many([batch("a"), batch("gone"), batch("b")], uow)
    assert [r.suppressed for r in results] == [False, True, False]
    assert await count(uow, "events") == 2
    assert await count(uow, "profiles") == 2


async def test_export_is_everything_stored_about_the_person(client, uow, sources, monkeypatch) -> None:
    monkeypatch.setattr(erasure, "EXPORT_PAGE", 2)  # several pages of events and visits
    profile_id = await ann(client)
    await bob(client)
    response = await client.get(f"/api/profiles/{profile_id}/export", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert data["profile_id"] == profile_id
    assert {p["id"] for p in data["profiles"]} == {profile_id, data["merges"][0]["from_profile_id"]}
    assert next(p for p in data["profiles"] if p["id"] == profile_id)["traits"]["name"] == "Ann"
    assert {(i["kind"], i["value"]) for i in data["identities"]} >= {
        ("person", "42"),
        ("person", "anon-1"),
        ("email_sha256", email_sha256("ann@example.com")),
    }
    assert len(data["events"]) == await count(uow, "events", profile_id=profile_id)
    assert len({e["id"] for e in data["events"]}) == len(data["events"])
    times = [e["time"] for e in data["events"]]
    assert times == sorted(times)
    assert len(data["sessions"]) == await count(uow, "sessions", profile_id=profile_id)
    assert data["carts"][0]["source_id"] == SID
    assert "bob@example.com" not in response.text and email_sha256("bob@example.com") not in response.text
    # A merged id exports the same person.
    merged = data["merges"][0]["from_profile_id"]
    again = (await client.get(f"/api/profiles/{merged}/export", headers=ADMIN)).json()
    assert again["profile_id"] == profile_id and len(again["events"]) == len(data["events"])


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({}, 422, ["body", "profile_id"]),
        ({"profile_id": "x", "identity": "person:1"}, 422, ["body", "identity"]),
        ({"identity": "nocolon"}, 422, ["body", "identity"]),
        ({"identity": ":x"}, 422, ["body", "identity"]),
        ({"identity": "email:not-an-address"}, 422, ["body", "identity"]),
        ({"identity": "person:1\u0000"}, 422, ["body", "identity"]),
        ({"profile_id": ""}, 422, ["body", "profile_id"]),
        ({"profile_id": "p", "suppress": "maybe"}, 422, ["body", "suppress"]),
        ({"profile_id": "p", "unknown": 1}, 422, ["body", "unknown"]),
        ({"profile_id": "no-such-profile"}, 404, None),
        ({"identity": "email:nobody@example.com"}, 404, None),
        ({"identity": "person:42", "source": "other"}, 404, None),
    ],
)
async def test_bad_requests_name_the_field_and_store_nothing(client, uow, sources, body, status, loc) -> None:
    await ann(client)
    before = await counts(uow)
    response = await client.post("/api/erasures", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    if loc is not None:
        assert response.json()["detail"][0]["loc"] == loc
    assert await counts(uow) == before
    assert await count(uow, "erasures") == 0


async def test_identity_in_several_sources_asks_for_source(client, uow, sources) -> None:
    await source_service.create_source(uow, name="app2", dialect="tracktor", source_id="tracktor-2")
    await tracktor(client, "/track", id="42", action="page-view", data={})
    await client.get("/track", params={"sid": "tracktor-2", "id": "42", "action": "page-view"})
    response = await client.post("/api/erasures", json={"identity": "person:42"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "source"]


async def test_unknown_ids_and_missing_token(client, sources) -> None:
    assert (await client.get("/api/erasures/nope", headers=ADMIN)).status_code == 404
    assert (await client.delete("/api/suppressions/nope", headers=ADMIN)).status_code == 404
    assert (await client.get("/api/profiles/nope/export", headers=ADMIN)).status_code == 404
    assert (await client.post("/api/erasures", json={"profile_id": "x"})).status_code == 401
    assert (await client.get("/api/suppressions")).status_code == 401
    assert (await client.get("/api/erasures?limit=0", headers=ADMIN)).json()["detail"][0]["loc"] == [
        "query",
        "limit",
    ]


async def test_suppression_rows_hold_hashes_only(client, uow, sources) -> None:
    profile_id = await ann(client)
    await erase(client, uow, {"profile_id": profile_id, "suppress": True})
    async with uow.read() as db:
        rows = (await db.execute(select(suppressions))).all()
    text = json.dumps([[str(v) for v in row._mapping.values()] for row in rows])
    for secret in (profile_id, "anon-1", email_sha256("ann@example.com")):
        assert secret not in text


@pytest.mark.parametrize("settings_overrides", [{"erasure_interval": 60, "retention_interval": 0}])
async def test_the_servers_job_starts_at_once_on_a_request(client, uow, sources) -> None:
    """The process that took the request wakes its job: done long before the 60 s tick."""
    profile_id = await ann(client)
    response = await client.post("/api/erasures", json={"profile_id": profile_id}, headers=ADMIN)
    for _ in range(100):  # bounded: up to 10 s
        view = (await client.get(f"/api/erasures/{response.json()['id']}", headers=ADMIN)).json()
        if view["state"] == "done":
            break
        await asyncio.sleep(0.1)
    assert view["state"] == "done"
    assert await count(uow, "profiles") == 0


@pytest.mark.parametrize(
    ("method", "url", "content", "loc"),
    [
        ("GET", "/api/erasures/a%00b", None, ["path", "erasure_id"]),
        ("GET", "/api/erasures/" + "x" * 256, None, ["path", "erasure_id"]),
        ("DELETE", "/api/suppressions/a%00b", None, ["path", "suppression_id"]),
        ("GET", "/api/profiles/a%00b/export", None, ["path", "profile_id"]),
        ("GET", "/api/profiles/" + "x" * 256 + "/export", None, ["path", "profile_id"]),
        ("POST", "/api/erasures", '{"identity": "person:\\ud800", "source": "s"}', ["body", "identity"]),
        ("POST", "/api/erasures", '{"profile_id": "a\\u0000b"}', ["body", "profile_id"]),
        ("POST", "/api/erasures", '{"identity": "person:1", "source": "\\u0000"}', ["body", "source"]),
        ("POST", "/api/erasures", json.dumps({"profile_id": "x" * 256}), ["body", "profile_id"]),
        ("POST", "/api/erasures", json.dumps({"identity": "person:" + "x" * 256}), ["body", "identity"]),
        ("POST", "/api/erasures", json.dumps({"identity": "k" * 33 + ":v"}), ["body", "identity"]),
        ("POST", "/api/erasures", json.dumps({"identity": "email:" + "a" * 2000}), ["body", "identity"]),
        ("POST", "/api/erasures", "[1]", ["body"]),
        ("POST", "/api/erasures", "{", ["body", 1]),
    ],
)
async def test_hostile_input_is_a_422_naming_it(client, uow, sources, method, url, content, loc) -> None:
    await ann(client)
    before = await counts(uow)
    headers = {**ADMIN, "Content-Type": "application/json"}
    response = await client.request(method, url, content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()
    assert await counts(uow) == before
    assert await count(uow, "erasures") == 0


async def test_an_over_long_email_hash_finds_nobody(client, sources) -> None:
    body = {"identity": "email_sha256:" + "a" * 600}
    assert (await client.post("/api/erasures", json=body, headers=ADMIN)).status_code == 404


async def test_another_persons_events_in_an_erased_visit_stay_without_it(client, uow, sources) -> None:
    """A Tracardi client that changed its profile id mid-visit: the other profile's events in the
    erased visit are kept, their visit cleared (also for one stored after SQLite's read)."""
    first = await client.post("/track", json=tracker_payload(WEB, session="shared", events=2))
    erased = first.json()["profile"]["id"]
    other = (await client.post("/track", json=tracker_payload(WEB, session="own", events=1))).json()
    hop = await client.post(
        "/track", json=tracker_payload(WEB, session="shared", profile=other["profile"]["id"])
    )
    assert hop.json()["profile"]["id"] == other["profile"]["id"]
    assert hop.json()["session"]["id"] == first.json()["session"]["id"]  # the erased person's visit
    seen = None
    if uow.dialect == "sqlite":  # SQLite reads before its last transaction (db/erasure.py)
        async with uow.read() as db:
            seen = await read_others_in_visits(db, [erased])
        assert len(seen[0]) == 3
    late = await client.post(
        "/track", json=tracker_payload(WEB, session="shared", profile=other["profile"]["id"])
    )
    assert late.status_code == 200
    async with uow.transaction() as db:
        await delete_person(db, [erased], 100, seen)
    assert await count(uow, "events", profile_id=other["profile"]["id"]) == 7
    assert await count(uow, "events", session_id=first.json()["session"]["id"]) == 0
    assert await count(uow, "profiles") == 1
