"""Tracktor.io `/set`, `/track`, `/alias` (seed 004, section 2), wire to rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, count, counts
from tests.helpers import fixture
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.core.sources import SourceInfo
from trackway.db.models import profile_merges
from trackway.db.uow import SqlUnitOfWork
from trackway.dialects.tracktor import PIXEL, signature

SEED = fixture("tracktor_calls.json")
SID = SEED["sid"]
OTHER = "tracktor-second-site"
SECRET = SEED["secure_mode"]["secret"]
BROWSER_IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


@pytest.fixture
async def source(uow: SqlUnitOfWork) -> SourceInfo:
    return await source_service.create_source(uow, name="app", dialect="tracktor", source_id=SID)


@pytest.fixture(params=["GET", "POST"])
def method(request: pytest.FixtureRequest) -> str:
    """Every call is GET with query parameters, or POST with the same fields as a form body."""
    return str(request.param)


async def call(
    client: httpx.AsyncClient,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    """A Tracktor call; a ``data`` dict is sent as the JSON text the seed asks for."""
    fields = {k: json.dumps(v) if k == "data" and not isinstance(v, str) else v for k, v in params.items()}
    fields.setdefault("sid", SID)
    if method == "POST":
        return await client.post(path, data=fields, headers=headers)
    return await client.get(path, params=fields, headers=headers)


async def ok(client: httpx.AsyncClient, path: str, method: str = "GET", **params: Any) -> str:
    """Make a call that must succeed; the profile id it names."""
    response = await call(client, path, method, **params)
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["id"])


async def profile(client: httpx.AsyncClient, profile_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def person(client: httpx.AsyncClient, person_id: str, source_id: str = SID) -> dict[str, Any] | None:
    """The live profile a person id of a source resolves to, if any."""
    response = await client.get(
        "/api/profiles", params={"identity": f"person:{person_id}", "source": source_id}, headers=ADMIN
    )
    items = response.json()["items"]
    assert len(items) <= 1
    return dict(items[0]) if items else None


async def events_of(client: httpx.AsyncClient, profile_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)
    return list(response.json()["items"])


def email_identities(view: dict[str, Any]) -> list[str]:
    return [i["value"] for i in view["identities"] if i["kind"] == "email_sha256"]


async def assert_nothing_written(uow: SqlUnitOfWork) -> None:
    written = await counts(uow)
    assert {k: v for k, v in written.items() if k != "sources"} == dict.fromkeys(
        written.keys() - {"sources"}, 0
    )


# --- the seed's calls ----------------------------------------------------------------------


async def test_seed_example_calls(client, uow, source) -> None:
    response = await client.get(SEED["set"])
    assert response.status_code == 200, response.text
    profile_id = response.json()["profile"]["id"]
    assert response.json() == {"profile": {"id": profile_id}}
    view = await profile(client, profile_id)
    assert view["traits"] == {"billing_plan": "Gold"}
    assert view["anonymous"] is False
    assert {"kind": "person", "value": "unicorn", "scope": SID} in view["identities"]

    response = await client.get(SEED["track"])
    assert response.json()["profile"]["id"] == profile_id
    (event,) = await events_of(client, profile_id)
    assert event["type"] == "rated item"
    assert event["properties"] == {"category": "Consumer electronics", "productid": 33156, "rating": 5}
    assert event["time"] == datetime.fromtimestamp(1429186474, UTC).isoformat()
    assert event["context"]["time_source"] == "ts"
    assert event["context"]["person_id"] == "unicorn"
    assert event["source_id"] == SID

    response = await client.get(SEED["alias"])
    assert response.json()["profile"]["id"] == profile_id
    # The anonymous id was never seen: the alias is recorded and applies from then on.
    assert await ok(client, "/track", id="a-x123124123", action="page-view") == profile_id
    assert await count(uow, "profiles") == 1


def test_seed_signature_example() -> None:
    secure = SEED["secure_mode"]
    assert signature(secure["secret"], secure["identity"]) == secure["signature"].lower()


async def test_seed_signature_verifies_over_http(client, uow) -> None:
    secure = SEED["secure_mode"]
    await source_service.create_source(
        uow, name="secure", dialect="tracktor", source_id=SID, secret=secure["secret"], signed_only=True
    )
    for sign in (secure["signature"], secure["signature"].lower()):
        response = await call(client, "/track", id=secure["identity"], sign=sign, action="login")
        assert response.status_code == 200, response.text
    assert await count(uow, "events") == 2


# --- /set ------------------------------------------------------------------------------------


async def test_set_keeps_unnamed_properties_and_null_removes_one(client, source, method) -> None:
    profile_id = await ok(client, "/set", method, id="7", data={"plan": "free", "age": 25, "delete_me": 1})
    assert await ok(client, "/set", method, id="7", data={"plan": "gold", "delete_me": None}) == profile_id
    assert (await profile(client, profile_id))["traits"] == {"plan": "gold", "age": 25}


async def test_first_set_of_a_person_creates_a_profile(client, uow, source) -> None:
    first = await ok(client, "/set", id="new-1", data={"a": 1})
    second = await ok(client, "/set", id="new-2", data={})
    assert first != second
    assert await count(uow, "profiles") == 2


async def test_set_takes_any_json_value(client, source) -> None:
    data = {
        "address": {"city": "Oslo", "lines": ["Storgata 1", None]},
        "tags": ["a", 1, True, {"x": []}],
        "score": 3.25,
        "vip": False,
        "empty": {},
    }
    profile_id = await ok(client, "/set", id="7", data=data)
    assert (await profile(client, profile_id))["traits"] == data


async def test_set_with_percent_encoded_unicode_data(client, source) -> None:
    data = "%7B%22city%22%3A%22M%C3%BCnchen%22%2C%22note%22%3A%22%E2%9C%93%20%F0%9F%A6%84%22%7D"
    response = await client.get(f"/set?sid={SID}&ts=1429186474&id=J%C3%BCrgen&data={data}")
    assert response.status_code == 200, response.text
    view = await profile(client, response.json()["profile"]["id"])
    assert view["traits"] == {"city": "München", "note": "✓ 🦄"}
    assert (await person(client, "Jürgen"))["id"] == view["id"]


async def test_replayed_set_is_idempotent(client, uow, source, method) -> None:
    params = {"id": "unicorn", "ts": "1429186474", "data": {"email": "u@example.com", "plan": "gold"}}
    profile_id = await ok(client, "/set", method, **params)
    before = await profile(client, profile_id)
    for _ in range(3):
        assert await ok(client, "/set", method, **params) == profile_id
    after = await profile(client, profile_id)
    assert after["traits"] == before["traits"] == {"email": "u@example.com", "plan": "gold"}
    assert after["identities"] == before["identities"]
    assert after["updated_at"] == before["updated_at"]
    assert await count(uow, "profiles") == 1
    assert await count(uow, "identities") == 2  # the person id and the email


async def test_predefined_properties_are_stored_when_valid(client, source) -> None:
    data = {
        "email": "unicorn@example.com",
        "first_name": "Dave",
        "last_name": "Johnson",
        "profile_image": "https://cdn.example/u/1.png",
        "age": 25,
    }
    profile_id = await ok(client, "/set", id="unicorn", data=data)
    assert (await profile(client, profile_id))["traits"] == data


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("email", "two@@example.com"),
        ("email", 42),
        ("email", {"address": "a@example.com"}),
        ("first_name", 5),
        ("last_name", ["Johnson"]),
        ("profile_image", "javascript:alert(1)"),
        ("profile_image", "ftp://example.com/a.png"),
        ("profile_image", "https://"),
        ("profile_image", "a picture"),
        ("profile_image", True),
    ],
)
async def test_invalid_predefined_property_is_422_and_not_stored(
    client, uow, source, method, name, value
) -> None:
    response = await call(client, "/set", method, id="unicorn", data={name: value, "plan": "gold"})
    assert response.status_code == 422, response.text
    where = "body" if method == "POST" else "query"
    assert [where, "data", name] in [e["loc"] for e in response.json()["detail"]]
    await assert_nothing_written(uow)


# --- /track ----------------------------------------------------------------------------------


async def test_track_stores_the_event_at_ts(client, source, method) -> None:
    profile_id = await ok(
        client, "/track", method, id="unicorn", ts="1700000000", action="rated-product", data={"rating": 5}
    )
    (event,) = await events_of(client, profile_id)
    assert event["type"] == "rated-product"
    assert event["properties"] == {"rating": 5}
    assert event["time"] == "2023-11-14T22:13:20+00:00"
    assert event["time"] != event["received_at"]


async def test_track_without_ts_uses_the_receive_time_and_says_so(client, source) -> None:
    profile_id = await ok(client, "/track", id="unicorn", action="signup")
    (event,) = await events_of(client, profile_id)
    assert event["time"] == event["received_at"]
    assert event["context"]["time_source"] == "received"
    assert event["properties"] == {}


async def test_track_calls_of_a_person_form_server_side_visits(client, source) -> None:
    """Tracktor sends no session id: a person's events form one visit until 30 minutes of silence."""
    profile_id = await ok(client, "/track", id="u", ts="1700000000", action="a")
    await ok(client, "/track", id="u", ts="1700000600", action="b")
    await ok(client, "/track", id="u", ts="1700007200", action="c")
    await ok(client, "/set", id="u", data={"plan": "gold"})  # no event: no visit
    first, second, third = await events_of(client, profile_id)
    assert first["session_id"] is not None
    assert first["session_id"] == second["session_id"] != third["session_id"]
    assert (await profile(client, profile_id))["visits"] == 2


async def test_post_track_form_is_tracktor_and_json_is_tracardi(client, uow, source) -> None:
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id="tracardi-src")
    form = await client.post("/track", data={"sid": SID, "id": "u", "action": "form-event"})
    assert form.status_code == 200, form.text
    assert set(form.json()) == {"profile"}
    beacon = await client.post(
        "/track",
        content=json.dumps({"source": {"id": "tracardi-src"}, "events": [{"type": "page-view"}]}),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert beacon.status_code == 200, beacon.text
    assert "session" in beacon.json()
    # A form body is a Tracktor call, so a Tracardi source id in it is not a Tracktor source.
    wrong = await client.post("/track", data={"sid": "tracardi-src", "id": "u", "action": "x"})
    assert wrong.status_code == 401
    assert await count(uow, "events") == 2


# --- /alias ----------------------------------------------------------------------------------


async def test_alias_of_anonymous_into_identified_keeps_the_anonymous_history(
    client, uow, source, method
) -> None:
    anon = await ok(client, "/track", method, id="a-3bxuAx118r02UsdTUdk1Ri9", action="page-view")
    await ok(client, "/track", method, id="a-3bxuAx118r02UsdTUdk1Ri9", action="add-to-cart")
    await ok(
        client, "/set", method, id="a-3bxuAx118r02UsdTUdk1Ri9", data={"landing": "/promo", "plan": "trial"}
    )
    assert (await profile(client, anon))["anonymous"] is True
    known = await ok(client, "/set", method, id="unicorn", data={"plan": "gold"})
    await ok(client, "/track", method, id="unicorn", action="login")

    response = await call(client, "/alias", method, srcid="a-3bxuAx118r02UsdTUdk1Ri9", destid="unicorn")
    assert response.status_code == 200, response.text
    assert response.json() == {"profile": {"id": known}}

    view = await profile(client, known)
    assert view["anonymous"] is False
    assert view["traits"] == {"landing": "/promo", "plan": "gold"}  # the destination's values win
    assert view["merged_from"] == [anon]
    assert {i["value"] for i in view["identities"] if i["kind"] == "person"} == {
        "a-3bxuAx118r02UsdTUdk1Ri9",
        "unicorn",
    }
    assert [e["type"] for e in await events_of(client, known)] == ["page-view", "add-to-cart", "login"]
    # The old id's profile answers with the survivor; later calls with the old id land there too.
    assert (await profile(client, anon))["id"] == known
    assert await ok(client, "/track", method, id="a-3bxuAx118r02UsdTUdk1Ri9", action="after") == known
    assert await count(uow, "events", profile_id=known) == 4
    assert await count(uow, "events", profile_id=anon) == 0
    async with uow.read() as db:
        audit = (await db.execute(select(profile_merges))).all()
    assert [(r.from_profile_id, r.into_profile_id, r.reason, r.source_id) for r in audit] == [
        (anon, known, "alias", SID)
    ]


async def test_alias_when_neither_id_was_seen(client, uow, source) -> None:
    profile_id = await ok(client, "/alias", srcid="a-early", destid="late-user")
    assert await count(uow, "profiles") == 1
    assert await ok(client, "/track", id="a-early", action="visit") == profile_id
    assert await ok(client, "/set", id="late-user", data={"x": 1}) == profile_id
    assert len(await events_of(client, profile_id)) == 1


async def test_alias_to_itself_and_of_ids_sharing_a_profile_are_no_ops(client, uow, source) -> None:
    profile_id = await ok(client, "/set", id="unicorn", data={"plan": "gold"})
    assert await ok(client, "/alias", srcid="unicorn", destid="unicorn") == profile_id
    assert await count(uow, "profile_merges") == 0
    await ok(client, "/alias", srcid="a-1", destid="unicorn")
    # a-1 and unicorn now share a profile: aliasing them again, either way, changes nothing.
    assert await ok(client, "/alias", srcid="a-1", destid="unicorn") == profile_id
    assert await ok(client, "/alias", srcid="unicorn", destid="a-1") == profile_id
    assert await count(uow, "profile_merges") == 0
    assert await count(uow, "profiles") == 1


async def test_alias_chains_resolve_to_the_final_survivor_and_never_cycle(client, uow, source) -> None:
    p1, p2, p3 = [await ok(client, "/track", id=f"p{i}", action="seen") for i in (1, 2, 3)]
    await ok(client, "/alias", srcid="p1", destid="p2")
    assert await ok(client, "/alias", srcid="p2", destid="p3") == p3
    assert await ok(client, "/track", id="p1", action="again") == p3
    # Aliasing back towards the first id finds all three on one profile: nothing to merge.
    assert await ok(client, "/alias", srcid="p3", destid="p1") == p3
    assert await count(uow, "profiles", merged_into=None) == 1
    assert await count(uow, "profile_merges") == 2
    assert len(await events_of(client, p3)) == 4
    assert {(await profile(client, p))["id"] for p in (p1, p2)} == {p3}


# --- identity: scope, anonymity, email -------------------------------------------------------


async def test_person_ids_are_scoped_to_their_source(client, uow, source) -> None:
    await source_service.create_source(uow, name="other", dialect="tracktor", source_id=OTHER)
    here = await ok(client, "/set", id="42", data={"site": "one"})
    there = await ok(client, "/set", id="42", sid=OTHER, data={"site": "two"})
    assert here != there
    assert (await person(client, "42", SID))["traits"] == {"site": "one"}
    assert (await person(client, "42", OTHER))["traits"] == {"site": "two"}


async def test_anonymous_ids_make_anonymous_profiles_until_identified(client, source) -> None:
    anon = await ok(client, "/track", id="a-xrWNmprAoEJM507bt7m5LKg", action="visit")
    await ok(client, "/set", id="a-xrWNmprAoEJM507bt7m5LKg", data={"theme": "dark"})
    assert (await profile(client, anon))["anonymous"] is True
    known = await ok(client, "/track", id="5115", action="visit")
    assert (await profile(client, known))["anonymous"] is False
    # Seed 3.1.2: a person can be identified by email too.
    await ok(client, "/set", id="a-xrWNmprAoEJM507bt7m5LKg", data={"email": "anon@example.com"})
    assert (await profile(client, anon))["anonymous"] is False


async def test_email_becomes_an_identity_that_joins_profiles_across_sources(client, uow, source) -> None:
    await source_service.create_source(uow, name="other", dialect="tracktor", source_id=OTHER)
    first = await ok(client, "/set", id="1", data={"email": "Ann@Example.com", "plan": "gold"})
    await ok(client, "/track", id="1", action="bought")
    second = await ok(client, "/track", id="9", sid=OTHER, action="visited")
    assert second != first
    # The same address (case aside) on another source's person: one person, the oldest survives.
    assert await ok(client, "/set", id="9", sid=OTHER, data={"email": "ann@example.com"}) == first
    view = await profile(client, first)
    assert email_identities(view) == [email_sha256("ann@example.com")]
    assert view["traits"] == {"email": "ann@example.com", "plan": "gold"}
    assert view["merged_from"] == [second]
    assert (await person(client, "9", OTHER))["id"] == first
    assert len(await events_of(client, first)) == 2
    # Other dialects and the read API find the person by the email itself.
    found = await client.get("/api/profiles", params={"identity": "email:ANN@example.com"}, headers=ADMIN)
    assert [p["id"] for p in found.json()["items"]] == [first]


async def test_email_null_removes_the_property_and_the_identity(client, uow, source, method) -> None:
    profile_id = await ok(client, "/set", method, id="1", data={"email": "ann@example.com", "plan": "gold"})
    assert email_identities(await profile(client, profile_id)) == [email_sha256("ann@example.com")]
    await ok(client, "/set", method, id="1", data={"email": None})
    view = await profile(client, profile_id)
    assert view["traits"] == {"plan": "gold"}
    assert email_identities(view) == []
    # The address no longer names this profile: someone else using it is someone else.
    other = await ok(client, "/set", method, id="2", data={"email": "ann@example.com"})
    assert other != profile_id
    assert await count(uow, "profile_merges") == 0


async def test_changed_email_replaces_the_identity(client, uow, source) -> None:
    profile_id = await ok(client, "/set", id="1", data={"email": "ann@exmaple.com"})
    await ok(client, "/set", id="1", data={"email": "ann@example.com"})
    assert email_identities(await profile(client, profile_id)) == [email_sha256("ann@example.com")]
    # Only the case changes: the same identity stays.
    await ok(client, "/set", id="1", data={"email": "Ann@Example.com"})
    assert email_identities(await profile(client, profile_id)) == [email_sha256("ann@example.com")]
    # The owner of the address that was a typo is not pulled into this profile.
    assert await ok(client, "/set", id="2", data={"email": "ann@exmaple.com"}) != profile_id
    assert await count(uow, "profile_merges") == 0


async def test_concurrent_email_changes_leave_only_the_last_address_linked(client, uow, source) -> None:
    """The old address is read and unlinked inside the transaction: two changes racing for one
    person never leave both new addresses linked."""
    profile_id = await ok(client, "/set", id="9", data={"email": "first@example.com"})
    await asyncio.gather(
        *(ok(client, "/set", id="9", data={"email": f"change{i}@example.com"}) for i in range(6))
    )
    view = await profile(client, profile_id)
    (address,) = email_identities(view)
    assert address == email_sha256(view["traits"]["email"])


# --- responses: JSON or the 1x1 GIF ----------------------------------------------------------


async def test_pixel_on_request_or_for_image_loads(client, uow, source) -> None:
    for params, headers in [
        ({"pixel": "1"}, {}),
        ({}, {"Accept": BROWSER_IMG_ACCEPT}),
        ({}, {"Accept": "image/gif"}),
    ]:
        response = await call(client, "/track", id="u", action="open", headers=headers, **params)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == PIXEL
        assert len(PIXEL) == 43 and PIXEL.startswith(b"GIF89a")
        assert "no-store" in response.headers["cache-control"]
    assert await count(uow, "events") == 3
    for accept in ("application/json", "image/*, application/json", "*/*", ""):
        response = await call(client, "/track", id="u", action="open", headers={"Accept": accept})
        assert response.headers["content-type"] == "application/json"
    # Errors stay JSON even when a pixel was asked for.
    response = await call(client, "/track", id="u", action="", pixel="1")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"


# --- rejections: status, JSON body, nothing written ------------------------------------------


@pytest.mark.parametrize("setup", ["missing", "unknown", "disabled", "other-dialect"])
async def test_invalid_source_is_401_and_writes_nothing(client, uow, setup) -> None:
    sid: str | None = "some-source"
    if setup == "missing":
        sid = None
    elif setup == "disabled":
        await source_service.create_source(uow, name="d", dialect="tracktor", source_id=sid, enabled=False)
    elif setup == "other-dialect":
        await source_service.create_source(uow, name="t", dialect="tracardi", source_id=sid)
    sent = {} if sid is None else {"sid": sid}
    for method in ("GET", "POST"):
        for path, params in [
            ("/set", {"id": "u", "data": "{}"}),
            ("/track", {"id": "u", "action": "a"}),
            ("/alias", {"srcid": "a-1", "destid": "u"}),
        ]:
            fields = {**params, **sent}
            if method == "POST":
                response = await client.post(path, data=fields)
            else:
                response = await client.get(path, params=fields)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json() == {"detail": "Access denied. Invalid source."}
    await assert_nothing_written(uow)


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/set", {"id": "u", "ts": "yesterday", "data": "{}"}, ["ts"]),
        ("/track", {"id": "u", "ts": "1429186474.5", "action": "a"}, ["ts"]),
        ("/alias", {"srcid": "a", "destid": "b", "ts": "1e9"}, ["ts"]),
        ("/track", {"id": "u", "ts": "99999999999999", "action": "a"}, ["ts"]),
        ("/set", {"id": "u", "data": "{billing_plan:'Gold'}"}, ["data"]),
        ("/set", {"id": "u", "data": "[1, 2]"}, ["data"]),
        ("/set", {"id": "u", "data": '"text"'}, ["data"]),
        ("/set", {"id": "u"}, ["data"]),
        ("/track", {"id": "u", "action": "a", "data": "null"}, ["data"]),
        ("/track", {"id": "u", "action": "a", "data": '{"k": "a\\u0000b"}'}, ["data", "k"]),
        ("/track", {"id": "u"}, ["action"]),
        ("/track", {"id": "u", "action": ""}, ["action"]),
        ("/track", {"id": "u", "action": "x" * 256}, ["action"]),
        ("/track", {"action": "a"}, ["id"]),
        ("/set", {"id": "", "data": "{}"}, ["id"]),
        ("/set", {"id": "x" * 256, "data": "{}"}, ["id"]),
        ("/set", {"id": "a\x00b", "data": "{}"}, ["id"]),
        ("/alias", {"destid": "b"}, ["srcid"]),
        ("/alias", {"srcid": "a"}, ["destid"]),
    ],
)
async def test_bad_parameter_is_422_naming_it(client, uow, source, method, path, params, loc) -> None:
    response = await call(client, path, method, **params)
    assert response.status_code == 422, response.text
    where = "body" if method == "POST" else "query"
    assert [where, *loc] in [error["loc"] for error in response.json()["detail"]]
    await assert_nothing_written(uow)


async def test_parameter_given_twice_is_422(client, uow, source) -> None:
    response = await client.get(f"/track?sid={SID}&id=victim&id=attacker&action=a")
    assert response.status_code == 422
    assert ["query", "id"] in [error["loc"] for error in response.json()["detail"]]
    response = await client.post(f"/track?id=victim&sid={SID}", data={"id": "attacker", "action": "a"})
    assert response.status_code == 422
    await assert_nothing_written(uow)


async def test_post_body_that_is_not_a_form_is_415(client, uow, source) -> None:
    for path in ("/set", "/alias"):
        response = await client.post(path, json={"sid": SID, "id": "u", "data": {}})
        assert response.status_code == 415
        assert "x-www-form-urlencoded" in response.json()["detail"]
    await assert_nothing_written(uow)


async def secure_source(uow: SqlUnitOfWork, *, signed_only: bool, secret: str | None = SECRET) -> None:
    await source_service.create_source(
        uow, name="secure", dialect="tracktor", source_id=SID, secret=secret, signed_only=signed_only
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/set", {"id": "5115", "data": "{}"}),
        ("/set", {"id": "5115", "data": "{}", "sign": signature(SECRET, "5116")}),
        ("/track", {"id": "5115", "action": "a"}),
        ("/track", {"id": "5115", "action": "a", "sign": "not-hex"}),
        ("/track", {"id": "a-anon", "action": "a"}),
        ("/alias", {"srcid": "a-1", "destid": "5115"}),
        ("/alias", {"srcid": "a-1", "destid": "5115", "destsign": signature(SECRET, "a-1")}),
        ("/alias", {"srcid": "a-1", "destid": "5115", "sign": signature(SECRET, "5115")}),
        # An identified srcid must be vouched for too, or a signed user could absorb a stranger.
        ("/alias", {"srcid": "victim", "destid": "5115", "destsign": signature(SECRET, "5115")}),
        (
            "/alias",
            {
                "srcid": "victim",
                "destid": "5115",
                "destsign": signature(SECRET, "5115"),
                "srcsign": signature(SECRET, "other"),
            },
        ),
    ],
)
async def test_signed_only_refuses_missing_or_wrong_signatures(client, uow, method, path, params) -> None:
    await secure_source(uow, signed_only=True)
    response = await call(client, path, method, **params)
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "Invalid or missing signature."}
    await assert_nothing_written(uow)


async def test_signed_only_accepts_valid_signatures(client, uow) -> None:
    await secure_source(uow, signed_only=True)
    sign = signature(SECRET, "5115")
    profile_id = await ok(client, "/set", id="5115", sign=sign, data={"plan": "gold"})
    assert await ok(client, "/track", id="5115", sign=sign.upper(), action="a") == profile_id
    assert await ok(client, "/alias", srcid="a-1", destid="5115", destsign=sign) == profile_id
    srcsign = signature(SECRET, "4242")
    assert (
        await ok(client, "/alias", srcid="4242", destid="5115", destsign=sign, srcsign=srcsign) == profile_id
    )
    assert await ok(client, "/alias", srcid="5115", destid="5115", destsign=sign) == profile_id


async def test_without_signed_only_a_sent_signature_must_still_verify(client, uow) -> None:
    await secure_source(uow, signed_only=False)
    assert (await call(client, "/track", id="5115", action="a")).status_code == 200
    assert (
        await call(client, "/track", id="5115", action="a", sign=signature(SECRET, "5115"))
    ).status_code == 200
    before = await counts(uow)
    wrong = await call(client, "/track", id="5115", action="a", sign=signature(SECRET, "other"))
    assert wrong.status_code == 403
    wrong = await call(client, "/alias", srcid="a-1", destid="5115", destsign="00")
    assert wrong.status_code == 403
    assert await counts(uow) == before


async def test_signature_sent_to_a_source_without_secret_is_refused(client, uow) -> None:
    await secure_source(uow, signed_only=False, secret=None)
    response = await call(client, "/track", id="5115", action="a", sign=signature(SECRET, "5115"))
    assert response.status_code == 403
    await assert_nothing_written(uow)
    assert (await call(client, "/track", id="5115", action="a")).status_code == 200


# --- concurrency -----------------------------------------------------------------------------


async def test_parallel_opposite_aliases_end_with_one_survivor_and_lose_no_event(client, uow, source) -> None:
    """A->B and B->A at once, with events arriving for both ids meanwhile, over many pairs."""
    pairs = 8
    for i in range(pairs):
        for who in ("x", "y"):
            await ok(client, "/track", id=f"{who}{i}", action="before")
    requests = []
    for i in range(pairs):
        requests += [
            call(client, "/alias", srcid=f"x{i}", destid=f"y{i}"),
            call(client, "/alias", srcid=f"y{i}", destid=f"x{i}"),
            *(call(client, "/track", id=f"{who}{i}", action="during") for who in ("x", "y", "x", "y")),
        ]
    responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=120)
    assert [r.status_code for r in responses] == [200] * len(requests), [r.text for r in responses][:3]

    for i in range(pairs):
        survivor = (await person(client, f"x{i}"))["id"]
        assert (await person(client, f"y{i}"))["id"] == survivor
        # Whichever alias ran second found both ids on one profile: both answer the survivor.
        assert {r.json()["profile"]["id"] for r in responses[i * 6 : i * 6 + 2]} == {survivor}
        assert await count(uow, "events", profile_id=survivor) == 6
        assert await count(uow, "profile_merges", into_profile_id=survivor) == 1
    assert await count(uow, "events") == pairs * 6
    assert await count(uow, "profiles", merged_into=None) == pairs
    assert await count(uow, "profile_merges") == pairs
