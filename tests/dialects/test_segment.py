"""Segment / RudderStack HTTP tracking API: routes, auth, identities, merges, traits, dedup, time, limits."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, count, counts
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.core.sources import SourceInfo
from trackway.db.uow import SqlUnitOfWork

KEY = "segment-write-key"
OTHER = "segment-other-key"
PERSON_TABLES = ("events", "carts", "sessions", "identities", "profile_merges", "profiles")


def basic(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def call(type_: str, **fields: Any) -> dict[str, Any]:
    """A call as the server SDKs build it: a messageId and a timestamp, unless told otherwise."""
    body: dict[str, Any] = {"type": type_, "messageId": str(uuid.uuid4())}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


async def batch(
    client: httpx.AsyncClient, calls: list[Any], headers: dict[str, str] | None = None, **envelope: Any
) -> httpx.Response:
    return await client.post(
        "/v1/batch", json={"batch": calls, **envelope}, headers=basic() if headers is None else headers
    )


async def people(client: httpx.AsyncClient, identity: str, source: str = KEY) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/profiles", params={"identity": identity, "source": source}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def person(client: httpx.AsyncClient, identity: str, source: str = KEY) -> dict[str, Any]:
    [found] = await people(client, identity, source)
    view: dict[str, Any] = (await client.get(f"/api/profiles/{found['id']}", headers=ADMIN)).json()
    return view


async def events_of(client: httpx.AsyncClient, profile_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/profiles/{profile_id}/events", params={"limit": 1000}, headers=ADMIN)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def assert_nothing_written(uow: SqlUnitOfWork) -> None:
    written = await counts(uow)
    assert {name: written[name] for name in PERSON_TABLES} == dict.fromkeys(PERSON_TABLES, 0)


@pytest.fixture
async def segment_source(uow: SqlUnitOfWork) -> SourceInfo:
    return await source_service.create_source(uow, name="app", dialect="segment", source_id=KEY)


# --- the server SDKs' batch ------------------------------------------------------------------


async def test_a_batch_stores_calls_traits_and_context(client, uow, segment_source) -> None:
    context = {"library": {"name": "analytics-python", "version": "2.4.0"}}
    calls = [
        call("identify", userId="u-1", traits={"email": "Ann@Example.com", "plan": "gold"}, context=context),
        call("track", userId="u-1", event="Order Completed", properties={"total": 19.9}, context=context),
        call("page", userId="u-1", name="Home", category="Docs", properties={"url": "https://a.example/"}),
        call("screen", userId="u-1", name="Settings"),
        call("group", userId="u-1", groupId="acme", traits={"name": "Acme", "employees": 42}),
    ]
    response = await batch(client, calls)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    ann = await person(client, "user_id:u-1")
    assert ann["traits"] == {"email": "Ann@Example.com", "plan": "gold"}
    assert ann["anonymous"] is False
    assert {(i["kind"], i["value"], i["scope"]) for i in ann["identities"]} == {
        ("user_id", "u-1", KEY),
        ("email_sha256", email_sha256("ann@example.com"), None),
    }
    stored = await events_of(client, ann["id"])
    assert [e["type"] for e in stored] == ["Order Completed", "page", "screen", "group"]
    track, page, screen, group = stored
    assert track["properties"] == {"total": 19.9}
    assert track["context"]["library"] == {"name": "analytics-python", "version": "2.4.0"}
    assert track["context"]["segment"]["messageId"] == calls[1]["messageId"]
    assert track["context"]["segment"]["userId"] == "u-1"
    assert page["properties"] == {"url": "https://a.example/", "name": "Home", "category": "Docs"}
    assert screen["properties"] == {"name": "Settings"}
    assert group["properties"] == {"groupId": "acme", "traits": {"name": "Acme", "employees": 42}}
    # One derived visit: server calls carry no session id.
    assert {e["session_id"] for e in stored} == {track["session_id"]}
    assert ann["visits"] == 1


@pytest.mark.parametrize("path", ["/v1/track", "/t"])
async def test_single_calls_with_the_write_key_in_the_body(client, uow, segment_source, path) -> None:
    body = call("track", anonymousId="anon-1", event="Clicked", writeKey=KEY)
    response = await client.post(path, content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    visitor = await person(client, "anonymous_id:anon-1")
    assert visitor["anonymous"] is True
    [event] = await events_of(client, visitor["id"])
    assert event["type"] == "Clicked"
    # The type comes from the path: a single call need not repeat it.
    page = {"anonymousId": "anon-1", "writeKey": KEY, "name": "Pricing"}
    short = path.replace("t", "p") if path == "/t" else "/v1/page"
    response = await client.post(short, content=json.dumps(page), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert [e["type"] for e in await events_of(client, visitor["id"])] == ["Clicked", "page"]


@pytest.mark.parametrize(
    ("path", "type_", "fields"),
    [
        ("/v1/identify", "identify", {"traits": {"plan": "a"}}),
        ("/v1/page", "page", {"name": "P"}),
        ("/v1/screen", "screen", {"name": "S"}),
        ("/v1/group", "group", {"groupId": "g"}),
        ("/v1/alias", "alias", {"previousId": "old"}),
        ("/i", "identify", {"traits": {"plan": "a"}}),
        ("/s", "screen", {"name": "S"}),
        ("/g", "group", {"groupId": "g"}),
        ("/a", "alias", {"previousId": "old"}),
    ],
)
async def test_every_route_takes_its_call(client, uow, segment_source, path, type_, fields) -> None:
    response = await client.post(path, json={"userId": "u-9", **fields}, headers=basic())
    assert response.status_code == 200, (path, response.text)
    assert (await person(client, "user_id:u-9"))["anonymous"] is False


async def test_analytics_js_batch_on_b_as_text_plain(client, uow, segment_source) -> None:
    body = {
        "batch": [call("track", anonymousId="a-7", event="One"), call("page", anonymousId="a-7")],
        "writeKey": KEY,
        "sentAt": datetime.now(UTC).isoformat(),
    }
    response = await client.post("/b", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    visitor = await person(client, "anonymous_id:a-7")
    assert [e["type"] for e in await events_of(client, visitor["id"])] == ["One", "page"]


async def test_gzip_bodies(client, uow, segment_source) -> None:
    body = gzip.compress(json.dumps({"batch": [call("track", userId="z", event="Zipped")]}).encode())
    headers = {**basic(), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = await client.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [event] = await events_of(client, (await person(client, "user_id:z"))["id"])
    assert event["type"] == "Zipped"
    response = await client.post("/v1/batch", content=b"not gzip", headers=headers)
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body"]
    # A small body that inflates past the limit is refused without inflating it all.
    bomb = gzip.compress(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    response = await client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 400
    assert "limit" in response.json()["detail"][0]["msg"]


# --- authentication ----------------------------------------------------------------------------


async def test_unknown_missing_or_foreign_write_key_is_401(client, uow, segment_source) -> None:
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id="web-site")
    body = {"batch": [call("track", userId="u", event="E")]}
    for headers in (
        {},
        basic("nobody"),
        basic("web-site"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
    ):
        response = await client.post("/v1/batch", json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.json() == {"detail": "Access denied. Invalid source."}
    response = await client.post("/v1/batch", json={**body, "writeKey": "web-site"})
    assert response.status_code == 401
    disabled = await source_service.create_source(
        uow, name="off", dialect="segment", source_id=OTHER, enabled=False
    )
    response = await client.post("/v1/batch", json=body, headers=basic(disabled.id))
    assert response.status_code == 401
    await assert_nothing_written(uow)


# --- identities and merges ------------------------------------------------------------------


async def test_anonymous_history_joins_the_user_on_a_call_with_both(client, uow, segment_source) -> None:
    await batch(
        client, [call("page", anonymousId="dev-1"), call("track", anonymousId="dev-1", event="Browse")]
    )
    anonymous = await person(client, "anonymous_id:dev-1")
    assert anonymous["anonymous"] is True
    response = await batch(client, [call("identify", anonymousId="dev-1", userId="u-1", traits={"n": 1})])
    assert response.status_code == 200
    user = await person(client, "user_id:u-1")
    assert user["id"] == anonymous["id"]  # the anonymous profile became the user's
    assert user["anonymous"] is False
    assert [e["type"] for e in await events_of(client, user["id"])] == ["page", "Browse"]
    # Later anonymous calls of that device land on the user too.
    await batch(client, [call("track", anonymousId="dev-1", event="Again")])
    assert (await person(client, "anonymous_id:dev-1"))["id"] == user["id"]


async def test_anonymous_device_joins_a_known_user(client, uow, segment_source) -> None:
    await batch(client, [call("track", userId="u-2", event="Signed up")])
    await batch(client, [call("track", anonymousId="dev-2", event="Browse")])
    await batch(client, [call("track", anonymousId="dev-2", userId="u-2", event="Login")])
    user = await person(client, "user_id:u-2")
    assert sorted(e["type"] for e in await events_of(client, user["id"])) == ["Browse", "Login", "Signed up"]
    assert user["merged_from"]
    assert await count(uow, "profiles", merged_into=None) == 1


async def test_a_shared_device_never_merges_two_users(client, uow, segment_source) -> None:
    await batch(client, [call("track", anonymousId="kiosk", userId="ann", event="Ann")])
    await batch(client, [call("track", anonymousId="kiosk", userId="bob", event="Bob")])
    ann = await person(client, "user_id:ann")
    bob = await person(client, "user_id:bob")
    assert ann["id"] != bob["id"]
    assert [e["type"] for e in await events_of(client, ann["id"])] == ["Ann"]
    assert [e["type"] for e in await events_of(client, bob["id"])] == ["Bob"]


async def test_ids_are_scoped_to_their_source(client, uow, segment_source) -> None:
    await source_service.create_source(uow, name="other", dialect="segment", source_id=OTHER)
    await batch(client, [call("track", userId="42", event="A")])
    await batch(client, [call("track", userId="42", event="B")], headers=basic(OTHER))
    assert (await person(client, "user_id:42"))["id"] != (await person(client, "user_id:42", OTHER))["id"]


async def test_alias_merges_previous_id_into_user_id(client, uow, segment_source) -> None:
    await batch(client, [call("track", anonymousId="old-device", event="Before")])
    await batch(client, [call("track", userId="old-user", event="Old account")])
    await batch(client, [call("track", userId="new-user", event="After")])
    response = await batch(
        client,
        [
            call("alias", previousId="old-device", userId="new-user"),
            call("alias", previousId="old-user", userId="new-user"),
        ],
    )
    assert response.status_code == 200, response.text
    user = await person(client, "user_id:new-user")
    assert sorted(e["type"] for e in await events_of(client, user["id"])) == [
        "After",
        "Before",
        "Old account",
    ]
    assert (await person(client, "anonymous_id:old-device"))["id"] == user["id"]
    assert (await person(client, "user_id:old-user"))["id"] == user["id"]
    assert await count(uow, "profile_merges", reason="alias") == 2
    # Aliasing again changes nothing.
    await batch(client, [call("alias", previousId="old-user", userId="new-user")])
    assert await count(uow, "profile_merges") == 2


async def test_email_trait_is_the_global_email_identity(client, uow, segment_source) -> None:
    await source_service.create_source(uow, name="tt", dialect="tracktor", source_id="tt-app")
    answer = await client.get(
        "/set", params={"sid": "tt-app", "id": "p-1", "data": json.dumps({"email": "ann@example.com"})}
    )
    assert answer.status_code == 200
    tracktor_profile = answer.json()["profile"]["id"]
    await batch(client, [call("identify", userId="ann", traits={"email": " ANN@example.com "})])
    ann = await person(client, "user_id:ann")
    assert ann["id"] == tracktor_profile  # the oldest profile survives the merge
    # A new address replaces the identity; null removes trait and identity.
    await batch(client, [call("identify", userId="ann", traits={"email": "ann@new.example"})])
    assert await people(client, "email:ann@example.com", "tt-app") == []
    assert (await person(client, "email:ann@new.example", KEY))["id"] == ann["id"]
    await batch(client, [call("identify", userId="ann", traits={"email": None, "plan": "x"})])
    ann = await person(client, "user_id:ann")
    assert "email" not in ann["traits"]
    assert ann["traits"]["plan"] == "x"
    assert not [i for i in ann["identities"] if i["kind"] == "email_sha256"]


async def test_an_email_that_is_no_address_is_a_trait_not_an_identity(client, uow, segment_source) -> None:
    await batch(client, [call("identify", userId="a", traits={"email": "n/a"})])
    await batch(client, [call("identify", userId="b", traits={"email": "n/a"})])
    assert (await person(client, "user_id:a"))["id"] != (await person(client, "user_id:b"))["id"]
    assert (await person(client, "user_id:a"))["traits"] == {"email": "n/a"}


async def test_group_calls_are_memberships_usable_in_segments(client, uow, segment_source) -> None:
    await batch(
        client,
        [
            call("group", userId="ann", groupId="acme", traits={"industry": "Rockets"}),
            call("group", userId="bob", groupId="globex", traits={"industry": "Chemicals"}),
        ],
    )
    condition = {"event": "group", "where": [{"property": "groupId", "op": "eq", "value": "acme"}]}
    response = await client.post("/api/segments/preview", json={"condition": condition}, headers=ADMIN)
    assert response.status_code == 200, response.text
    ann = await person(client, "user_id:ann")
    assert [item["id"] for item in response.json()["items"]] == [ann["id"]]
    condition = {
        "event": "group",
        "where": [{"property": "traits.industry", "op": "eq", "value": "Chemicals"}],
    }
    response = await client.post("/api/segments/preview", json={"condition": condition}, headers=ADMIN)
    bob = await person(client, "user_id:bob")
    assert [item["id"] for item in response.json()["items"]] == [bob["id"]]
    # The group leaf says the same in short, in a saved segment too; and its negation.
    created = await client.post(
        "/api/segments", json={"name": "Acme", "condition": {"group": "acme"}}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    assert created.json()["condition"] == {"group": "acme"}
    members = await client.get(f"/api/segments/{created.json()['id']}/people", headers=ADMIN)
    assert [item["id"] for item in members.json()["items"]] == [ann["id"]]
    assert {"id": created.json()["id"], "name": "Acme"} in (await person(client, "user_id:ann"))["segments"]
    response = await client.post(
        "/api/segments/preview", json={"condition": {"not": {"group": "acme"}}}, headers=ADMIN
    )
    assert [item["id"] for item in response.json()["items"]] == [bob["id"]]
    for bad in ({"group": ""}, {"group": 5}, {"group": "a", "x": 1}):
        response = await client.post("/api/segments/preview", json={"condition": bad}, headers=ADMIN)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][:2] == ["body", "condition"]


# --- dedup and time ---------------------------------------------------------------------------


async def test_message_id_deduplicates_for_good(client, uow, segment_source) -> None:
    calls = [
        call("identify", userId="u", traits={"plan": "a"}),
        call("track", userId="u", event="Paid"),
        call("page", userId="u"),
        call("group", userId="u", groupId="g"),
    ]
    assert (await batch(client, calls)).status_code == 200
    assert await count(uow, "events") == 3
    # The SDK retries the same batch later (any time later: the key is unique in the database).
    assert (await batch(client, calls)).status_code == 200
    again = [{**c, "timestamp": "2020-01-01T00:00:00Z"} for c in calls]
    assert (await batch(client, again)).status_code == 200
    assert await count(uow, "events") == 3
    # One messageId twice in one batch: stored once.
    twice = call("track", userId="u", event="Twice")
    assert (await batch(client, [twice, twice])).status_code == 200
    assert await count(uow, "events", type="Twice") == 1
    # Another source may use the same messageId.
    await source_service.create_source(uow, name="other", dialect="segment", source_id=OTHER)
    assert (await batch(client, [calls[1]], headers=basic(OTHER))).status_code == 200
    assert await count(uow, "events", type="Paid") == 2


async def test_clock_skew_is_corrected(client, uow, segment_source) -> None:
    now = datetime.now(UTC)
    skewed = now + timedelta(hours=3)  # the device's clock runs 3 hours ahead
    calls = [
        # Happened 10 s before it was sent, by the device's clock.
        call(
            "track",
            userId="u",
            event="Corrected",
            originalTimestamp=(skewed - timedelta(seconds=10)).isoformat(),
            sentAt=skewed.isoformat(),
        ),
        call("track", userId="u", event="Given", timestamp="2026-01-02T03:04:05.678Z"),
        call("track", userId="u", event="Received"),
        # The envelope's sentAt serves calls that have none of their own.
        call(
            "track",
            userId="u",
            event="Envelope",
            originalTimestamp=(skewed - timedelta(minutes=1)).isoformat(),
        ),
    ]
    response = await batch(client, calls, sentAt=skewed.isoformat())
    assert response.status_code == 200, response.text
    stored = {e["type"]: e for e in await events_of(client, (await person(client, "user_id:u"))["id"])}
    received = datetime.fromisoformat(stored["Corrected"]["received_at"])
    assert datetime.fromisoformat(stored["Corrected"]["time"]) == received - timedelta(seconds=10)
    assert datetime.fromisoformat(stored["Envelope"]["time"]) == received - timedelta(minutes=1)
    assert datetime.fromisoformat(stored["Given"]["time"]) == datetime(
        2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC
    )
    assert stored["Received"]["time"] == stored["Received"]["received_at"]
    kept = stored["Corrected"]["context"]["segment"]
    assert kept["originalTimestamp"] == calls[0]["originalTimestamp"]
    assert kept["sentAt"] == calls[0]["sentAt"]
    assert datetime.fromisoformat(kept["receivedAt"]) == received


# --- refusals: 400 naming the problem, nothing stored ----------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"batch": [{"type": "track", "event": "E"}]}, ["body", "batch", 0]),
        ({"batch": [{"type": "track", "userId": "u"}]}, ["body", "batch", 0, "event"]),
        ({"batch": [{"type": "track", "userId": "u", "event": ""}]}, ["body", "batch", 0, "event"]),
        ({"batch": [{"type": "fly", "userId": "u"}]}, ["body", "batch", 0, "type"]),
        ({"batch": [{"type": "alias", "userId": "u"}]}, ["body", "batch", 0, "previousId"]),
        ({"batch": [{"type": "group", "userId": "u"}]}, ["body", "batch", 0, "groupId"]),
        ({"batch": [{"type": "track", "userId": True, "event": "E"}]}, ["body", "batch", 0, "userId"]),
        (
            {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": []}]},
            ["body", "batch", 0, "properties"],
        ),
        (
            {"batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}]},
            ["body", "batch", 0, "timestamp"],
        ),
        (
            {"batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "1969-12-31T00:00:00Z"}]},
            ["body", "batch", 0, "timestamp"],
        ),
        (
            {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"a": 2**64}}]},
            ["body", "batch", 0, "properties", "a"],
        ),
        ({"batch": [{"type": "track", "userId": "u", "event": "E\u0000"}]}, ["body", "batch", 0, "event"]),
        ({"batch": [{"type": "track", "userId": "u" * 201, "event": "E"}]}, ["body", "batch", 0, "userId"]),
        ({"batch": ["track"]}, ["body", "batch", 0]),
        ({"batch": {}}, ["body", "batch"]),
        ({}, ["body", "batch"]),
    ],
)
async def test_bad_calls_are_400_naming_the_problem(client, uow, segment_source, body, loc) -> None:
    good = call("track", userId="fine", event="Fine")
    if isinstance(body.get("batch"), list):
        body = {"batch": [good, *body["batch"]]}
        loc = [*loc[:2], loc[2] + 1, *loc[3:]]
    response = await client.post("/v1/batch", content=json.dumps(body), headers=basic())
    assert response.status_code == 400, response.text
    assert loc in [problem["loc"] for problem in response.json()["detail"]], response.json()
    await assert_nothing_written(uow)  # all or nothing: the good call is not stored either


async def test_bad_json_and_non_objects_are_400(client, uow, segment_source) -> None:
    for content in (b"{", b"[]", b'{"batch": [NaN]}', "\u00e9".encode("latin-1")):
        response = await client.post("/v1/batch", content=content, headers=basic())
        assert response.status_code == 400, content
        assert response.json()["detail"][0]["loc"] == ["body"]
    response = await client.post("/v1/track", content=b"{", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    await assert_nothing_written(uow)


async def test_segment_limits(client, uow, segment_source) -> None:
    big = call("track", userId="u", event="Big", properties={"blob": "x" * (32 * 1024)})
    response = await batch(client, [call("track", userId="u", event="Small"), big])
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "batch", 1]
    response = await client.post("/v1/track", json=big, headers=basic())
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body"]
    many = [call("track", userId="u", event="E", properties={"p": "y" * 20_000}) for _ in range(30)]
    response = await batch(client, many)
    assert response.status_code == 400
    assert "500" in response.json()["detail"][0]["msg"] or "512000" in response.json()["detail"][0]["msg"]
    too_many = [{"type": "track", "userId": "u", "event": "E"}] * 2501
    response = await batch(client, too_many)
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "batch"]
    await assert_nothing_written(uow)


async def test_a_batch_of_2500_calls_is_stored(client, uow, segment_source) -> None:
    calls = [
        {"type": "track", "userId": f"u{i % 5}", "event": "E", "messageId": f"m{i}"} for i in range(2500)
    ]
    response = await batch(client, calls)
    assert response.status_code == 200, response.text
    assert await count(uow, "events") == 2500
    assert await count(uow, "profiles") == 5


@pytest.mark.parametrize("settings_overrides", [{"mask_ip": True}])
async def test_masked_ip(client, uow, segment_source) -> None:
    await batch(
        client, [call("track", userId="m", event="E", context={"ip": "198.51.100.77", "userAgent": "UA/1"})]
    )
    [event] = await events_of(client, (await person(client, "user_id:m"))["id"])
    assert event["context"]["ip"] == "198.51.100.0"
    session = (await client.get(f"/api/sessions/{event['session_id']}", headers=ADMIN)).json()
    assert session["context"]["request"]["ip"] == "198.51.100.0"
    assert session["context"]["request"]["user_agent"] == "UA/1"


async def test_campaign_and_page_are_the_visits_attribution(client, uow, segment_source) -> None:
    context = {
        "page": {"url": "https://shop.example/?utm_source=x", "referrer": "https://search.example/"},
        "campaign": {"source": "news", "medium": "email", "name": "dec"},
    }
    await batch(client, [call("page", anonymousId="v", context=context)])
    [event] = await events_of(client, (await person(client, "anonymous_id:v"))["id"])
    session = (await client.get(f"/api/sessions/{event['session_id']}", headers=ADMIN)).json()
    assert session["context"]["landing_page"] == "https://shop.example/?utm_source=x"
    assert session["context"]["page_referrer"] == "https://search.example/"
    assert session["context"]["utm"] == {"utm_source": "news", "utm_medium": "email", "utm_campaign": "dec"}


async def test_rudderstack_identify_traits_in_context(client, uow, segment_source) -> None:
    """RudderStack's SDKs put an identify's traits in ``context.traits`` only."""
    traits = {"email": "rs@example.com", "plan": "free"}
    await batch(client, [call("identify", userId="rs", context={"traits": traits})])
    rs = await person(client, "user_id:rs")
    assert rs["traits"] == traits
    assert (await person(client, "email:rs@example.com"))["id"] == rs["id"]


async def test_a_persons_calls_are_written_together_in_order(client, uow, segment_source) -> None:
    """Calls of one person in one batch land as they would one by one: same events, same order,
    one visit; an identify between them still applies between them."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    calls = []
    for n in range(3):
        for user in ("a", "b"):
            stamp = (at + timedelta(seconds=n)).isoformat()
            calls.append(call("track", userId=user, event=f"{user}{n}", timestamp=stamp))
    calls.insert(3, call("identify", userId="a", anonymousId="dev-a", traits={"plan": "x"}))
    calls.append(
        call(
            "track", anonymousId="dev-a", event="a-device", timestamp=(at + timedelta(seconds=9)).isoformat()
        )
    )
    assert (await batch(client, calls)).status_code == 200
    a = await person(client, "user_id:a")
    stored = await events_of(client, a["id"])
    assert [e["type"] for e in stored] == ["a0", "a1", "a2", "a-device"]
    assert len({e["session_id"] for e in stored}) == 2  # the user's visit, the device's
    assert a["traits"] == {"plan": "x"}
    assert [e["type"] for e in await events_of(client, (await person(client, "user_id:b"))["id"])] == [
        "b0",
        "b1",
        "b2",
    ]


async def test_the_envelopes_context_applies_to_every_call_under_its_own(client, uow, segment_source) -> None:
    calls = [
        call("track", userId="e", event="One"),
        call("track", userId="e", event="Two", context={"library": {"name": "mine"}}),
        call("track", userId="e", event="Three"),
    ]
    envelope = {"context": {"library": {"name": "sdk", "version": "1"}, "app": "x"}}
    assert (await batch(client, calls, **envelope)).status_code == 200
    one, two, three = await events_of(client, (await person(client, "user_id:e"))["id"])
    assert one["context"]["library"] == {"name": "sdk", "version": "1"}
    assert two["context"]["library"] == {"name": "mine", "version": "1"}
    assert one["context"]["app"] == two["context"]["app"] == "x"
    assert one["context"]["segment"]["messageId"] == calls[0]["messageId"]
    assert two["context"]["segment"]["messageId"] == calls[1]["messageId"]
    assert three["context"]["segment"]["messageId"] == calls[2]["messageId"]
