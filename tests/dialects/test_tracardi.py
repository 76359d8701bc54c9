"""Tracardi ``POST /track``: seed 001's payloads and identification rules, wire to rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, count, counts
from tests.helpers import fixture, tracker_payload
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.core.sources import SourceInfo
from trackway.db.uow import SqlUnitOfWork

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


async def post(client: httpx.AsyncClient, payload: Any, **kwargs: Any) -> httpx.Response:
    return await client.post("/track", json=payload, **kwargs)


async def test_seed_full_payload(client, uow, tracardi_source: SourceInfo) -> None:
    payload = fixture("tracardi_full.json")
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    body = response.json()
    # The seed's profile id does not exist here: a new one is made and returned.
    profile_id = body["profile"]["id"]
    assert profile_id != payload["profile"]["id"]
    uuid.UUID(profile_id, version=4)
    # Event 1 says saveEvent: false; events 1 and 2 say saveSession: false, event 3 does not.
    assert len(body["events"]) == 2
    assert body["session"] is not None
    assert await count(uow, "events") == 2
    assert await count(uow, "sessions", client_key=payload["session"]["id"]) == 1
    events = (await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)).json()["items"]
    assert [e["type"] for e in events] == ["consent-granted", "product-in-basket"]
    # The payload context is under every event's own context; options are kept.
    consent = events[0]
    assert consent["context"]["system"] == "webstore-backend"
    assert consent["context"]["options"] == {"profile": True, "saveSession": False}
    assert consent["properties"] == {"marketing": False, "general": True}


async def test_seed_minimal_payload(client, uow, tracardi_source) -> None:
    payload = fixture("tracardi_minimal.json")
    await source_service.create_source(uow, name="m", dialect="tracardi", source_id=payload["source"]["id"])
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["events"]) == 3
    profile = (await client.get(f"/api/profiles/{body['profile']['id']}", headers=ADMIN)).json()
    assert profile["visits"] == 1
    assert profile["anonymous"] is True


async def test_no_profile_id_creates_one_and_known_profile_keeps_it(client, uow, tracardi_source) -> None:
    first = (await post(client, tracker_payload(SOURCE, session="s-1"))).json()
    profile_id = first["profile"]["id"]
    again = (await post(client, tracker_payload(SOURCE, session="s-1", profile=profile_id))).json()
    assert again["profile"]["id"] == profile_id
    assert again["session"]["id"] == first["session"]["id"]
    assert await count(uow, "profiles") == 1
    profile = (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()
    assert profile["visits"] == 1


async def test_known_profile_with_new_session_is_a_new_visit(client, uow, tracardi_source) -> None:
    profile_id = (await post(client, tracker_payload(SOURCE, session="visit-1"))).json()["profile"]["id"]
    body = (await post(client, tracker_payload(SOURCE, session="visit-2", profile=profile_id))).json()
    assert body["profile"]["id"] == profile_id
    profile = (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()
    assert profile["visits"] == 2
    assert await count(uow, "sessions", profile_id=profile_id) == 2


async def test_unknown_profile_id_gets_a_new_profile(client, uow, tracardi_source) -> None:
    body = (await post(client, tracker_payload(SOURCE, session="s-new", profile="no-such-profile"))).json()
    assert body["profile"]["id"] != "no-such-profile"
    assert await count(uow, "profiles", id=body["profile"]["id"]) == 1


async def test_lost_profile_is_recovered_from_the_session(client, uow, tracardi_source) -> None:
    profile_id = (await post(client, tracker_payload(SOURCE, session="s-lost"))).json()["profile"]["id"]
    # The browser lost its localStorage but kept the session cookie.
    body = (
        await post(
            client, tracker_payload(SOURCE, session="s-lost", debugger=None, options={"debugger": True})
        )
    ).json()
    assert body["profile"]["id"] == profile_id
    assert body["debug"]["resolved_by"] == "session"
    # An unknown (say, corrupted) profile id with a known session recovers the same way.
    body = (await post(client, tracker_payload(SOURCE, session="s-lost", profile="garbage"))).json()
    assert body["profile"]["id"] == profile_id
    assert await count(uow, "profiles") == 1


async def test_payload_without_session(client, uow, tracardi_source) -> None:
    response = await post(client, tracker_payload(SOURCE), headers={"User-Agent": "backend/1.0"})
    body = response.json()
    assert response.status_code == 200
    assert body["session"] is None
    assert await count(uow, "sessions") == 0
    assert await count(uow, "events", session_id=None) == 3
    profile = (await client.get(f"/api/profiles/{body['profile']['id']}", headers=ADMIN)).json()
    assert profile["visits"] == 0
    events = (await client.get(f"/api/profiles/{body['profile']['id']}/events", headers=ADMIN)).json()[
        "items"
    ]
    # With no visit to hold them, the request's metadata sits on each event.
    assert events[0]["context"]["request"]["user_agent"] == "backend/1.0"


async def test_save_session_false_on_every_event_stores_no_session(client, uow, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-nosave")
    for event in payload["events"]:
        event["options"] = {"saveSession": False}
    body = (await post(client, payload)).json()
    assert body["session"] is None
    assert await count(uow, "sessions") == 0
    assert len(body["events"]) == 3


async def test_event_time_is_kept_and_received_at_added(client, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-t", events=2)
    payload["events"][0]["time"] = "2024-06-21T12:36:37Z"
    body = (await post(client, payload)).json()
    items = (await client.get(f"/api/profiles/{body['profile']['id']}/events", headers=ADMIN)).json()["items"]
    timed = next(e for e in items if e["properties"]["n"] == 0)
    untimed = next(e for e in items if e["properties"]["n"] == 1)
    assert timed["time"] == "2024-06-21T12:36:37+00:00"
    assert datetime.fromisoformat(timed["received_at"]) > datetime(2025, 1, 1, tzinfo=UTC)
    assert untimed["time"] == untimed["received_at"]


async def test_event_context_is_merged_over_payload_context(client, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-c", events=1)
    payload["context"] = {"app": {"name": "shop", "version": "1"}, "system": "web"}
    payload["events"][0]["context"] = {"app": {"version": "2"}, "tag": "pdp"}
    body = (await post(client, payload)).json()
    item = (await client.get(f"/api/profiles/{body['profile']['id']}/events", headers=ADMIN)).json()["items"][
        0
    ]
    assert item["context"]["app"] == {"name": "shop", "version": "2"}
    assert item["context"]["system"] == "web"
    assert item["context"]["tag"] == "pdp"


async def test_retried_request_stores_each_event_once(client, uow, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-retry")
    first = (await post(client, payload)).json()
    second = (await post(client, payload)).json()
    assert second["events"] == []
    assert sorted(second["duplicates"]) == sorted(first["events"])
    assert await count(uow, "events") == 3
    session = (await client.get(f"/api/sessions/{first['session']['id']}", headers=ADMIN)).json()
    assert session["event_count"] == 3


async def test_repeated_event_id_inside_one_payload_is_stored_once(client, uow, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-dup", events=2)
    payload["events"][1]["id"] = payload["events"][0]["id"]
    body = (await post(client, payload)).json()
    assert len(body["events"]) == 1
    assert body["duplicates"] == body["events"]
    assert await count(uow, "events") == 1


async def test_events_without_id_are_always_stored(client, uow, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-noid", with_ids=False)
    await post(client, payload)
    await post(client, payload)
    assert await count(uow, "events") == 6


async def test_text_plain_body_from_send_beacon(client, uow, tracardi_source) -> None:
    import orjson

    response = await client.post(
        "/track",
        content=orjson.dumps(tracker_payload(SOURCE, session="s-beacon")),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.status_code == 200, response.text
    assert await count(uow, "events") == 3


async def test_debugger_reports_what_was_resolved(client, tracardi_source) -> None:
    payload = tracker_payload(SOURCE, session="s-dbg")
    payload["events"][0]["options"] = {"debugger": True, "saveEvent": False}
    body = (await post(client, payload)).json()
    assert body["debug"] == {
        "resolved_by": "new",
        "profile_created": True,
        "session_created": True,
        "merged": [],
        "skipped_events": 1,
    }


async def test_session_keeps_request_metadata_and_landing_context(client, tracardi_source) -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    body = (
        await post(
            client,
            tracker_payload(SOURCE, session="s-meta"),
            headers={
                "User-Agent": ua,
                "Referer": "https://shop.example/p/1",
                "Origin": "https://shop.example",
            },
        )
    ).json()
    session = (await client.get(f"/api/sessions/{body['session']['id']}", headers=ADMIN)).json()
    context = session["context"]
    assert context["request"] == {
        "user_agent": ua,
        "ip": "203.0.113.7",
        "referer": "https://shop.example/p/1",
        "origin": "https://shop.example",
    }
    assert context["device"]["browser"] == "Chrome"
    assert context["landing_page"].startswith("https://shop.example/p/1")
    assert context["utm"] == {"utm_source": "news", "utm_medium": "email"}
    assert session["profile_id"] == body["profile"]["id"]
    assert session["client_key"] == "s-meta"


@pytest.mark.parametrize("settings_overrides", [{"mask_ip": True}])
async def test_ip_is_masked_when_configured(client, tracardi_source) -> None:
    body = (await post(client, tracker_payload(SOURCE, session="s-mask"))).json()
    session = (await client.get(f"/api/sessions/{body['session']['id']}", headers=ADMIN)).json()
    assert session["context"]["request"]["ip"] == "203.0.113.0"


# --- rejections: status, JSON body naming the field, nothing written -------------------------


async def assert_nothing_written(uow: SqlUnitOfWork) -> None:
    written = await counts(uow)
    assert {k: v for k, v in written.items() if k != "sources"} == dict.fromkeys(
        ("events", "carts", "sessions", "identities", "profile_merges", "profiles"), 0
    )


@pytest.mark.parametrize(
    ("source_id", "setup"),
    [("unknown-source", None), ("disabled-src", "disabled"), ("tracktor-src", "other-dialect")],
)
async def test_invalid_source_is_401_with_seed_body(client, uow, source_id, setup) -> None:
    if setup == "disabled":
        await source_service.create_source(
            uow, name="d", dialect="tracardi", source_id=source_id, enabled=False
        )
    elif setup == "other-dialect":
        await source_service.create_source(uow, name="t", dialect="tracktor", source_id=source_id)
    response = await post(client, tracker_payload(source_id, session="s"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Access denied. Invalid source."}
    await assert_nothing_written(uow)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b"{not json", ["body"]),
        (b"[1, 2]", ["body"]),
        (b'{"events": []}', ["body", "source"]),
        (b'{"source": {}, "events": []}', ["body", "source", "id"]),
        (b'{"source": {"id": "x"}}', ["body", "events"]),
        (b'{"source": {"id": "x"}, "events": [{"properties": {}}]}', ["body", "events", 0, "type"]),
        (b'{"source": {"id": "x"}, "events": [{"type": ""}]}', ["body", "events", 0, "type"]),
        (
            b'{"source": {"id": "x"}, "events": [{"type": "a", "properties": "no"}]}',
            ["body", "events", 0, "properties"],
        ),
        (b'{"source": {"id": "x"}, "events": {"type": "a"}}', ["body", "events"]),
        (b'{"source": {"id": "x"}, "session": {"id": 5}, "events": []}', ["body", "session", "id"]),
        (
            b'{"source": {"id": "x"}, "events": [{"type": "a", "time": "yesterday"}]}',
            ["body", "events", 0, "time"],
        ),
    ],
)
async def test_bad_input_is_422_naming_the_field(client, uow, tracardi_source, body, loc) -> None:
    response = await client.post("/track", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert loc in [error["loc"] for error in errors]
    await assert_nothing_written(uow)


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 2048, "max_batch_events": 5}])
async def test_oversized_body_and_batch_are_413(client, uow, tracardi_source) -> None:
    big = tracker_payload(SOURCE, session="s", events=1)
    big["events"][0]["properties"]["blob"] = "x" * 4096
    response = await post(client, big)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    many = tracker_payload(SOURCE, session="s", events=6)
    for event in many["events"]:
        event["properties"] = {}
    response = await post(client, many)
    assert response.status_code == 413
    await assert_nothing_written(uow)


async def test_cors_preflight_and_allowed_origins(client, uow) -> None:
    await source_service.create_source(
        uow, name="shop", dialect="tracardi", source_id="shop", allowed_origins=["https://shop.example"]
    )
    preflight = await client.options(
        "/track",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    assert "POST" in preflight.headers["access-control-allow-methods"]

    allowed = await post(
        client, tracker_payload("shop", session="s1"), headers={"Origin": "https://shop.example"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] in ("*", "https://shop.example")

    refused = await post(
        client, tracker_payload("shop", session="s2"), headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Origin not allowed for this source."}
    assert await count(uow, "sessions", client_key="s2") == 0

    # Server-side callers send no Origin at all: they are not browsers, CORS does not apply.
    backend = await post(client, tracker_payload("shop", session="s3"))
    assert backend.status_code == 200


async def test_json_body_labelled_as_a_form_is_a_tracker_payload(client, uow, tracardi_source) -> None:
    """``curl -d '{...}'`` sends application/x-www-form-urlencoded: still Tracardi's JSON."""
    import orjson

    response = await client.post(
        "/track",
        content=orjson.dumps(tracker_payload(SOURCE, session="s-curl")),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert await count(uow, "events") == 3


async def test_a_payload_without_events_resolves_a_profile_the_client_can_keep(
    client, uow, tracardi_source
) -> None:
    """The tracker may call with no events to learn its profile id: the id answered is stored,
    and a second call with it lands on the same profile and visit; no event is stored."""
    first = await client.post(
        "/track", json={"source": {"id": SOURCE}, "session": {"id": "s-empty"}, "events": []}
    )
    assert first.status_code == 200, first.text
    profile_id = first.json()["profile"]["id"]
    again = await client.post(
        "/track",
        json={
            "source": {"id": SOURCE},
            "session": {"id": "s-empty"},
            "profile": {"id": profile_id},
            "events": [],
        },
    )
    assert again.json()["profile"]["id"] == profile_id
    assert (await count(uow, "profiles"), await count(uow, "sessions"), await count(uow, "events")) == (
        1,
        1,
        0,
    )


# --- Tracardi's own tracker (liliput.min.js): its payload as it leaves the browser -----------


def liliput_payload(source_id: str, session: str, profile: str | None = None) -> dict[str, Any]:
    """What Tracardi's ``liliput.min.js`` posts after a page load (../shared/vendor/tracardi)."""
    page = {
        "url": "https://shop.example/p/1?utm_source=news",
        "path": "/p/1",
        "hash": "",
        "title": "Product 1",
        "referer": {"host": None, "query": None},
        "history": {"length": 1},
    }
    return {
        "source": {"id": source_id},
        "context": {
            "time": {"local": "2026-12-02T06:18:01.950Z", "tz": "Europe/Berlin"},
            "browser": {"local": {"browser": {"name": "chrome", "language": "de-DE"}}},
            "screen": {"local": {"width": 1200, "height": 900, "orientation": "landscape-primary"}},
            "utm": {"source": "news"},
        },
        "profile": {"id": profile} if profile else None,
        "device": {"id": "0b6e9a64-5b8f-4d0b-9d33-5b0f2f7c2a10"},
        "session": {"id": session},
        "options": {},
        "events": [
            {
                "time": {"create": "2026-12-02T06:18:02.068Z"},
                "properties": {"product": "Sun glasses - Badoo", "price": 13.45},
                "type": "purchase-order",
                "context": {"page": page},
            },
            {
                "time": {"create": "2026-12-02T06:18:02.069Z"},
                "properties": {"Eletronics": ["Mobile phones", "Accessories"]},
                "type": "interest",
                "context": {"page": page},
            },
        ],
    }


async def test_tracardi_trackers_payload_with_time_objects(client, uow, tracardi_source) -> None:
    first = await post(client, liliput_payload(SOURCE, session="tr-1"))
    assert first.status_code == 200, first.text
    # What the tracker reads: profile.id (it keeps it in tracardi-profile-id and __tr_pid).
    profile_id = first.json()["profile"]["id"]
    items = (await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)).json()["items"]
    assert [e["type"] for e in items] == ["purchase-order", "interest"]
    # The event time is the object's `create`, in UTC.
    assert [e["time"] for e in items] == [
        "2026-12-02T06:18:02.068000+00:00",
        "2026-12-02T06:18:02.069000+00:00",
    ]
    assert items[0]["properties"] == {"product": "Sun glasses - Badoo", "price": 13.45}
    assert items[0]["context"]["page"]["path"] == "/p/1"
    assert items[0]["context"]["time"] == {"local": "2026-12-02T06:18:01.950Z", "tz": "Europe/Berlin"}
    # The page sits on each event's context: the visit still gets its landing page.
    visit = (await client.get(f"/api/sessions/{first.json()['session']['id']}", headers=ADMIN)).json()
    assert visit["context"]["landing_page"] == "https://shop.example/p/1?utm_source=news"
    assert visit["context"]["utm"] == {"source": "news"}

    # The next page load sends the profile id it was given: the same profile, the same visit.
    again = (await post(client, liliput_payload(SOURCE, session="tr-1", profile=profile_id))).json()
    assert again["profile"]["id"] == profile_id
    assert again["session"]["id"] == first.json()["session"]["id"]
    # A new session cookie: a new visit of the same profile.
    later = (await post(client, liliput_payload(SOURCE, session="tr-2", profile=profile_id))).json()
    assert later["profile"]["id"] == profile_id
    assert (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()["visits"] == 2
    assert await count(uow, "events", profile_id=profile_id) == 6


@pytest.mark.parametrize(
    ("time", "stored"),
    [
        ({"create": "2026-12-02T07:18:02.068+01:00"}, "2026-12-02T06:18:02.068000+00:00"),
        ({"create": "2026-12-02T06:18:02"}, "2026-12-02T06:18:02+00:00"),  # naive: taken as UTC
        ({"insert": "2026-12-01T10:00:00Z"}, "2026-12-01T10:00:00+00:00"),  # Tracardi: create = insert
        (
            {"create": "2026-12-01T09:00:00Z", "insert": "2026-12-01T10:00:00Z", "process_time": 0.2},
            "2026-12-01T09:00:00+00:00",
        ),
        ({"create": "2026-12-01T09:00:00Z", "unknown": [1]}, "2026-12-01T09:00:00+00:00"),
        ({}, None),  # no time in it: the receive time
        ({"create": None}, None),
    ],
)
async def test_time_object_keys(client, tracardi_source, time: dict[str, Any], stored: str | None) -> None:
    payload = tracker_payload(SOURCE, session="s-time", events=1)
    payload["events"][0]["time"] = time
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    profile_id = response.json()["profile"]["id"]
    item = (await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)).json()["items"][0]
    assert item["time"] == (stored or item["received_at"])


@pytest.mark.parametrize(
    ("time", "named"),
    [
        ({"create": "yesterday"}, "time.create"),
        ({"create": {"at": 1}}, "time.create"),
        ({"insert": "soon"}, "time.insert"),
        ({"create": "2026-12-02T06:18:02Z", "process_time": "fast"}, "time.process_time"),
    ],
)
async def test_malformed_time_object_is_422_naming_the_field(
    client, uow, tracardi_source, time, named
) -> None:
    payload = tracker_payload(SOURCE, session="s-bad-time", events=2)
    payload["events"][1]["time"] = time
    response = await post(client, payload)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "events", 1, "time"]
    assert error["msg"].startswith(f"{named}: ")
    await assert_nothing_written(uow)


# --- Trackway's extension: identify (tracker.identify) ------------------------------------------


async def test_identify_names_the_browser_profile_and_joins_the_email(client, uow, tracardi_source) -> None:
    session = str(uuid.uuid4())
    first = (await client.post("/track", json=tracker_payload(SOURCE, session=session))).json()
    browser = first["profile"]["id"]
    # A backend already knows the person by email (Tracify's hash).
    await source_service.create_source(
        uow, name="backend", dialect="tracify", source_id="shop", secret="s" * 32
    )
    answer = await client.post(
        "/track",
        json={
            **tracker_payload(SOURCE, session=session, profile=browser, events=0),
            "identify": {"userId": "u-42", "traits": {"email": "Ann@Example.com", "name": "Ann", "x": None}},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["profile"]["id"] == browser
    view = (await client.get(f"/api/profiles/{browser}", headers=ADMIN)).json()
    assert view["anonymous"] is False
    assert view["traits"] == {"email": "Ann@Example.com", "name": "Ann"}
    assert {(i["kind"], i["value"], i["scope"]) for i in view["identities"]} >= {
        ("user_id", "u-42", SOURCE),
        ("email_sha256", email_sha256("ann@example.com"), None),
    }
    # Another device signs in as the same user: its profile joins the first one (the oldest).
    other = (await client.post("/track", json=tracker_payload(SOURCE, session=str(uuid.uuid4())))).json()
    joined = await client.post(
        "/track",
        json={
            **tracker_payload(SOURCE, session=str(uuid.uuid4()), profile=other["profile"]["id"], events=1),
            "identify": {"userId": "u-42"},
        },
    )
    assert joined.json()["profile"]["id"] == browser
    assert await count(uow, "profiles", merged_into=browser) == 1


async def test_identify_bad_input_is_422(client, uow, tracardi_source) -> None:
    for identify, loc in (
        ({"traits": {}}, ["body", "identify", "userId"]),
        ({"userId": ""}, ["body", "identify", "userId"]),
        ({"userId": "a\x00"}, ["body", "identify", "userId"]),
        ({"userId": "u", "traits": {"k": 2**64}}, ["body", "identify", "traits", "k"]),
    ):
        response = await client.post("/track", json={**tracker_payload(SOURCE), "identify": identify})
        assert response.status_code == 422, identify
        assert response.json()["detail"][0]["loc"] == loc
    assert await count(uow, "profiles") == 0
