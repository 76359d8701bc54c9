"""Tracify ``POST /tracify/events``: seed 002's payloads, all-or-nothing batches, dedup, identities."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, count, counts
from tests.helpers import fixture
from trackway.core import sources as source_service
from trackway.core.batch import IdentityRef, IngestBatch, RequestMeta, SourceRef
from trackway.core.identity import email_sha256
from trackway.core.ingest import ingest
from trackway.core.sources import SourceInfo
from trackway.db.uow import SqlUnitOfWork

SITE = "5f0e3c2a-7f7b-4c1e-9a51-2f3b8d1c0a11"
SECRET = "tracify-test-secret-0123456789abcdef"
# The seed's example hashes (seed 002, "identity_data").
SEED_EMAIL = "d6c77f0e3e6c1c276c2e9e6e7e1d8d0a5b4e7c7e3f1e7e7e5d8f7e2e7d5a5d7e"
SEED_VISIT = "b4e6a7c8d9e0f1d2c3b4a5e6f7e8d9c0b1a2d3e4f5d6c7e8a9b0c1d2e3f4d5c6"
SEED_IP = "e7d6c5b4a3b2c1d0e9f8e7d6c5b4a3d2e1f0d9c8b7a6e5d4c3b2a1d0e9f8c7b6"
SEED_UA = "a5b4c3d2e1f0e9d8c7b6a5d4c3b2e1d0c9b8a7d6e5f4c3b2a1d0e9f8c7b6a5d4"
T0 = datetime(2024, 6, 21, 12, 0, tzinfo=UTC)
PERSON_TABLES = ("events", "carts", "sessions", "identities", "profile_merges", "profiles")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed(name: str, site: str = SITE) -> dict[str, Any]:
    """A seed 002 example payload with our own site id substituted."""
    payload = fixture(f"tracify_{name}.json")
    for event in payload["events"]:
        event["customer_site_id"] = site
    return payload


def event(
    type_: str = "pageview",
    *,
    email: str | None = None,
    visit: str | None = "198.51.100.4|Mozilla/5.0",
    ip: str = "198.51.100.4",
    ua: str = "Mozilla/5.0",
    at: datetime = T0,
    url: str = "https://shop.example/p/1",
    site: str = SITE,
    **data: Any,
) -> dict[str, Any]:
    """A Tracify event as a backend would build it: hashes made by seed 002's algorithm."""
    identity: dict[str, int] = {sha(ip): 3, sha(ua): 4}
    if email is not None:
        identity[email_sha256(email)] = 1
    if visit is not None:
        identity[sha(visit)] = 2
    return {
        "url": url,
        "customer_site_id": site,
        "identity_data": identity,
        "datetime": at.strftime("%Y-%m-%d %H:%M:%S"),
        "type": type_,
        "data": {"origin": "https://shop.example", **data},
    }


def purchase(order_id: str = "A-1001", **kwargs: Any) -> dict[str, Any]:
    return event("purchase", **{"order_id": order_id, "currency": "EUR", "amount": "19.90", **kwargs})


async def post(client: httpx.AsyncClient, events: Any, key: str | None = SECRET) -> httpx.Response:
    body = events if isinstance(events, dict) else {"events": events}
    headers = {"X-API-Key": key} if key is not None else {}
    return await client.post("/tracify/events", json=body, headers=headers)


async def stored(client: httpx.AsyncClient, profile_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def profile(client: httpx.AsyncClient, profile_id: str) -> dict[str, Any]:
    view: dict[str, Any] = (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()
    return view


async def assert_nothing_written(uow: SqlUnitOfWork) -> None:
    written = await counts(uow)
    assert {name: written[name] for name in PERSON_TABLES} == dict.fromkeys(PERSON_TABLES, 0)


@pytest.fixture
async def tracify_source(uow: SqlUnitOfWork) -> SourceInfo:
    return await source_service.create_source(
        uow, name="shop backend", dialect="tracify", source_id=SITE, secret=SECRET
    )


# --- seed 002 example payloads ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pageview", "productview", "addtocart", "purchase", "conversion"])
async def test_seed_examples_are_stored(client, uow, tracify_source, name) -> None:
    payload = seed(name)
    response = await post(client, payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert body["duplicates"] == 0
    [answer] = body["events"]
    assert answer["index"] == 0
    assert answer["duplicate"] is False

    [row] = await stored(client, answer["profile_id"])
    sent = payload["events"][0]
    assert row["id"] == answer["id"]
    assert row["type"] == name
    assert row["source_id"] == SITE
    assert (
        row["time"]
        == datetime.strptime(sent["datetime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).isoformat()
    )
    assert row["properties"]["url"] == sent["url"]
    assert row["properties"]["origin"] == "https://www.yourwebsite.com"
    assert row["context"]["identity"] == {
        "email_sha256": SEED_EMAIL,
        "visit_hash": SEED_VISIT,
        "ip_hash": SEED_IP,
        "user_agent_hash": SEED_UA,
    }
    # Type 1 is a global identity and names a person; type 2 names the visit in this source.
    person = await profile(client, answer["profile_id"])
    assert person["anonymous"] is False
    assert {(i["kind"], i["value"], i["scope"]) for i in person["identities"]} == {
        ("email_sha256", SEED_EMAIL, None),
        ("visit_hash", SEED_VISIT, SITE),
    }
    assert row["session_id"] is not None
    assert person["visits"] == 1


async def test_seed_pageview_keeps_referer_and_url_parameters(client, tracify_source) -> None:
    body = (await post(client, seed("pageview"))).json()
    [row] = await stored(client, body["events"][0]["profile_id"])
    parameters = {
        "trc_mcmp_id": "1111111111111111111",
        "trc_mag_id": "2222222222222222222",
        "trc_mad_id": "3333333333333333333",
        "utm_medium": "paid",
        "utm_source": "fb",
    }
    assert row["properties"] == {
        "Referer": "https://www.referringwebsite.com",
        "origin": "https://www.yourwebsite.com",
        "url": "https://www.yourwebsite.com/your-full-path-here",
        "url_parameters": parameters,
    }
    session = (await client.get(f"/api/sessions/{row['session_id']}", headers=ADMIN)).json()
    assert session["context"]["landing_page"] == "https://www.yourwebsite.com/your-full-path-here"
    assert session["context"]["page_referrer"] == "https://www.referringwebsite.com"
    assert session["context"]["url_parameters"] == parameters
    assert session["context"]["utm"] == {"utm_medium": "paid", "utm_source": "fb"}
    # The request came from the shop's backend: its user agent and IP are not the visitor's.
    assert session["context"]["request"] == {}
    assert "device" not in session["context"]


async def test_seed_purchase_amounts_and_items_are_exact(client, uow, tracify_source) -> None:
    body = (await post(client, seed("purchase"))).json()
    [row] = await stored(client, body["events"][0]["profile_id"])
    assert row["properties"] == {
        "origin": "https://www.yourwebsite.com",
        "order_id": "123456789",
        "currency": "EUR",
        "amount": "100.00",
        "url": "https://www.yourwebsite.com/your-full-path-here",
        "items": [
            {"name": "Name of Product 1", "amount": "25", "qnt": "2"},
            {"name": "Name of Product 2", "amount": "50", "qnt": "1"},
        ],
    }
    assert await count(uow, "events", dedup_key="order:123456789") == 1


async def test_seed_conversion_is_deduplicated_by_conversion_id(client, uow, tracify_source) -> None:
    body = (await post(client, seed("conversion"))).json()
    [row] = await stored(client, body["events"][0]["profile_id"])
    assert row["properties"]["conversion_id"] == "123456789"
    assert row["properties"]["amount"] == "100.00"
    assert row["properties"]["currency"] == "EUR"
    # The same number as an order id is another key: a purchase and a conversion never collide.
    assert await count(uow, "events", dedup_key="conversion:123456789") == 1
    purchase_body = (await post(client, seed("purchase"))).json()
    assert purchase_body["accepted"] == 1


async def test_one_request_carries_many_events_in_order(client, uow, tracify_source) -> None:
    events = [seed(name)["events"][0] for name in ("pageview", "productview", "addtocart", "purchase")]
    body = (await post(client, events)).json()
    assert body["accepted"] == 4
    assert [e["index"] for e in body["events"]] == [0, 1, 2, 3]
    assert len({e["profile_id"] for e in body["events"]}) == 1
    rows = await stored(client, body["events"][0]["profile_id"])
    assert [r["id"] for r in rows] == [e["id"] for e in body["events"]]
    assert await count(uow, "sessions") == 1


async def test_url_parameters_come_from_the_url_and_from_data(client, tracify_source) -> None:
    sent = event(
        url="https://shop.example/p/1?utm_campaign=summer&utm_source=url&trc_mad_id=7&q=shoes",
        utm_source="data",
        gclid="kept-as-data",
    )
    body = (await post(client, [sent])).json()
    [row] = await stored(client, body["events"][0]["profile_id"])
    assert row["properties"]["url_parameters"] == {
        "utm_campaign": "summer",
        "utm_source": "data",
        "trc_mad_id": "7",
    }
    assert row["properties"]["gclid"] == "kept-as-data"


async def test_attribution_is_taken_from_the_first_event_of_a_visit(client, tracify_source) -> None:
    first = event(utm_source="newsletter")
    second = event(
        "productview", at=T0 + timedelta(minutes=3), utm_source="other", url="https://shop.example/p/2"
    )
    body = (await post(client, [first, second])).json()
    rows = await stored(client, body["events"][0]["profile_id"])
    assert rows[0]["session_id"] == rows[1]["session_id"]
    assert rows[1]["properties"]["url_parameters"] == {"utm_source": "other"}
    session = (await client.get(f"/api/sessions/{rows[0]['session_id']}", headers=ADMIN)).json()
    assert session["context"]["utm"] == {"utm_source": "newsletter"}
    assert session["context"]["landing_page"] == "https://shop.example/p/1"
    assert session["event_count"] == 2


async def test_currency_case_is_forgiven_and_numeric_ids_are_text(client, tracify_source) -> None:
    sent = event("purchase", order_id=42, currency="usd", amount=7)
    body = (await post(client, [sent])).json()
    [row] = await stored(client, body["events"][0]["profile_id"])
    assert (row["properties"]["order_id"], row["properties"]["currency"], row["properties"]["amount"]) == (
        "42",
        "USD",
        "7",
    )


# --- the source check: 401, nothing written ----------------------------------------------------


async def test_a_source_created_through_the_api_gets_a_secret_that_works(client, uow) -> None:
    created = await client.post("/api/sources", headers=ADMIN, json={"name": "srv", "dialect": "tracify"})
    assert created.status_code == 201, created.text
    source = created.json()
    assert isinstance(source["secret"], str) and len(source["secret"]) >= 32
    ok = await post(client, seed("pageview", site=source["id"]), key=source["secret"])
    assert ok.status_code == 200, ok.text
    refused = await post(client, seed("pageview", site=source["id"]), key=source["secret"][:-1])
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "case",
    [
        "missing key",
        "empty key",
        "wrong key",
        "another source's site",
        "mixed sites",
        "disabled",
        "other dialect",
    ],
)
async def test_invalid_source_is_401_and_writes_nothing(client, uow, tracify_source, case) -> None:
    other = "6a1b2c3d-0000-4000-8000-00000000beef"
    key: str | None = SECRET
    events = [event()]
    if case == "missing key":
        key = None
    elif case == "empty key":
        key = ""
    elif case == "wrong key":
        key = SECRET[:-1] + "x"
    elif case == "another source's site":
        await source_service.create_source(
            uow, name="o", dialect="tracify", source_id=other, secret="other-secret"
        )
        events = [event(site=other)]
    elif case == "mixed sites":
        await source_service.create_source(uow, name="o", dialect="tracify", source_id=other, secret=SECRET)
        events = [event(), event(site=other)]
    elif case == "disabled":
        await source_service.update_source(uow, SITE, {"enabled": False})
    elif case == "other dialect":
        await source_service.create_source(uow, name="t", dialect="tracardi", source_id=other, secret=SECRET)
        events = [event(site=other)]
    response = await post(client, events, key=key)
    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Access denied. Invalid source."}
    await assert_nothing_written(uow)


# --- validation: 422 naming every bad event, nothing written ----------------------------------


async def test_422_lists_every_invalid_event_by_index_and_field(client, uow, tracify_source) -> None:
    no_currency = purchase(amount=19.9)
    del no_currency["data"]["currency"]
    bad_identity = event()
    bad_identity["identity_data"] = {sha("198.51.100.4"): 3, sha("x"): 7}
    lost_quantity = purchase(order_id="A-2", ITEM1="Tea", AMT1="4.50", QTY2="1")
    lost_quantity["datetime"] = "2024-06-21T12:00:00Z"
    events = [
        event(),
        no_currency,
        bad_identity,
        event("conversion", conversion_id="c-1", currency="XYZ", amount="1.00"),
        lost_quantity,
        event("refund"),
        "not an event",
    ]
    response = await post(client, events)
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    expected = [
        ["body", "events", 1, "data", "currency"],
        ["body", "events", 1, "data", "amount"],
        ["body", "events", 2, "identity_data", sha("x")],
        ["body", "events", 2, "identity_data"],
        ["body", "events", 3, "data", "currency"],
        ["body", "events", 4, "datetime"],
        ["body", "events", 4, "data", "QTY2"],
        ["body", "events", 5, "type"],
        ["body", "events", 6],
    ]
    for loc in expected:
        assert loc in locs, (loc, locs)
    assert not [loc for loc in locs if loc[2] == 0], "event 0 is valid"
    missing_ua = next(
        e for e in response.json()["detail"] if e["loc"] == ["body", "events", 2, "identity_data"]
    )
    assert "type-4" in missing_ua["msg"]
    await assert_nothing_written(uow)


def _without(key: str, where: str = "") -> dict[str, Any]:
    sent = purchase()
    (sent[where] if where else sent).pop(key)
    return sent


def _with_identity(identity: dict[str, Any]) -> dict[str, Any]:
    sent = event()
    sent["identity_data"] = identity
    return sent


IP_UA = {sha("198.51.100.4"): 3, sha("Mozilla/5.0"): 4}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"events": []}, ["body", "events"]),
        ({"event": [purchase()]}, ["body", "events"]),
        ({"events": {"0": purchase()}}, ["body", "events"]),
        ({"events": [_without("url")]}, ["body", "events", 0, "url"]),
        ({"events": [_without("customer_site_id")]}, ["body", "events", 0, "customer_site_id"]),
        ({"events": [_without("identity_data")]}, ["body", "events", 0, "identity_data"]),
        ({"events": [_without("datetime")]}, ["body", "events", 0, "datetime"]),
        ({"events": [_without("data")]}, ["body", "events", 0, "data"]),
        ({"events": [_without("origin", "data")]}, ["body", "events", 0, "data", "origin"]),
        ({"events": [_without("order_id", "data")]}, ["body", "events", 0, "data", "order_id"]),
        ({"events": [_without("amount", "data")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(amount="1e3")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(amount="-5.00")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(amount="NaN")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(amount="100.00\n")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(amount="\u0661\u0660\u0660")]}, ["body", "events", 0, "data", "amount"]),
        ({"events": [purchase(order_id="")]}, ["body", "events", 0, "data", "order_id"]),
        ({"events": [purchase(order_id="x" * 201)]}, ["body", "events", 0, "data", "order_id"]),
        ({"events": [purchase(ITEM1="Tea", AMT1=4.5)]}, ["body", "events", 0, "data", "AMT1"]),
        ({"events": [purchase(AMT3="4.50")]}, ["body", "events", 0, "data", "AMT3"]),
        (
            {"events": [event("conversion", currency="EUR", amount="1")]},
            ["body", "events", 0, "data", "conversion_id"],
        ),
        (
            {"events": [event("purchase", order_id="1", currency="EURO", amount="1")]},
            ["body", "events", 0, "data", "currency"],
        ),
        ({"events": [_with_identity({**IP_UA, "abc": 1})]}, ["body", "events", 0, "identity_data", "abc"]),
        (
            {"events": [_with_identity({**IP_UA, sha("e") + "\n": 1})]},
            ["body", "events", 0, "identity_data", sha("e") + "\n"],
        ),
        (
            {"events": [_with_identity({**IP_UA, sha("e"): "1"})]},
            ["body", "events", 0, "identity_data", sha("e")],
        ),
        (
            {"events": [_with_identity({**IP_UA, sha("e"): 0})]},
            ["body", "events", 0, "identity_data", sha("e")],
        ),
        (
            {"events": [_with_identity({**IP_UA, sha("a"): 1, sha("b"): 1})]},
            ["body", "events", 0, "identity_data", sha("b")],
        ),
        ({"events": [_with_identity({sha("Mozilla/5.0"): 4})]}, ["body", "events", 0, "identity_data"]),
        ({"events": [_with_identity({sha("198.51.100.4"): 3})]}, ["body", "events", 0, "identity_data"]),
    ],
)
async def test_bad_input_is_422_naming_the_field(client, uow, tracify_source, body, loc) -> None:
    response = await client.post("/tracify/events", json=body, headers={"X-API-Key": SECRET})
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]
    await assert_nothing_written(uow)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_a_body_that_is_no_json_object_is_422(client, uow, tracify_source, raw) -> None:
    response = await client.post(
        "/tracify/events", content=raw, headers={"X-API-Key": SECRET, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    await assert_nothing_written(uow)


@pytest.mark.parametrize("settings_overrides", [{"max_batch_events": 3, "max_body_bytes": 4096}])
async def test_oversized_batch_and_body_are_413(client, uow, tracify_source) -> None:
    assert (await post(client, [event(at=T0 + timedelta(seconds=i)) for i in range(3)])).status_code == 200
    before = await counts(uow)
    response = await post(client, [event() for _ in range(4)])
    assert response.status_code == 413
    assert "3 event limit" in response.json()["detail"]
    big = event(note="x" * 5000)
    response = await post(client, [big])
    assert response.status_code == 413
    assert "byte limit" in response.json()["detail"]
    assert await counts(uow) == before


# --- dedup: purchases by order id, conversions by conversion id -------------------------------


async def test_repeats_in_one_batch_are_stored_once(client, uow, tracify_source) -> None:
    conversion = event("conversion", conversion_id="lead-7", currency="EUR", amount="0")
    events = [purchase("A-1"), purchase("A-1"), conversion, conversion, event(), purchase("A-2")]
    response = await post(client, events)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (4, 2)
    answers = body["events"]
    assert [a["duplicate"] for a in answers] == [False, True, False, True, False, False]
    assert answers[1]["id"] == answers[0]["id"]
    assert answers[3]["id"] == answers[2]["id"]
    assert await count(uow, "events") == 4
    assert await count(uow, "events", dedup_key="order:A-1") == 1
    assert await count(uow, "events", dedup_key="conversion:lead-7") == 1
    session = (
        await client.get(
            f"/api/sessions/{(await stored(client, answers[0]['profile_id']))[0]['session_id']}",
            headers=ADMIN,
        )
    ).json()
    assert session["event_count"] == 4


async def test_a_purchase_sent_again_later_is_a_duplicate_and_still_a_success(
    client, uow, tracify_source
) -> None:
    first = (await post(client, [purchase("B-9", email="ann@example.com")])).json()
    again = await post(
        client, [event(), purchase("B-9", email="ann@example.com", at=T0 + timedelta(hours=2))]
    )
    assert again.status_code == 200
    body = again.json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    assert body["events"][1] == {**first["events"][0], "index": 1, "duplicate": True}
    assert await count(uow, "events", dedup_key="order:B-9") == 1


async def test_a_purchase_re_sent_with_other_identity_data_creates_nothing(
    client, uow, tracify_source
) -> None:
    """A duplicate answers with the profile its stored event belongs to and writes nothing,
    even when the resend names someone else (another email, another visit)."""
    first = (await post(client, [purchase("D-7", email="ann@example.com")])).json()["events"][0]
    before = await counts(uow)
    again = await post(
        client, [purchase("D-7", email="bob@example.com", visit="203.0.113.9|Other/1.0", ip="203.0.113.9")]
    )
    assert again.status_code == 200, again.text
    assert again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "events": [{**first, "duplicate": True}],
    }
    assert await counts(uow) == before
    known = await client.get("/api/profiles", params={"identity": "email:bob@example.com"}, headers=ADMIN)
    assert known.json()["items"] == []


async def test_a_purchase_batch_re_sent_20_times_in_parallel_is_stored_once(
    client, uow, tracify_source
) -> None:
    batch = [event(email="bob@example.com"), purchase("C-20", email="bob@example.com")]
    responses = await asyncio.gather(*(post(client, batch) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20, [
        r.text for r in responses if r.status_code != 200
    ]
    answers = [r.json()["events"][1] for r in responses]
    assert sum(not a["duplicate"] for a in answers) == 1
    assert len({a["id"] for a in answers}) == 1
    assert await count(uow, "events", dedup_key="order:C-20") == 1
    assert await count(uow, "events", type="purchase") == 1
    # The pageviews carry no dedup key: each re-send stored one. All are one person's.
    assert await count(uow, "events", type="pageview") == 20
    assert await count(uow, "profiles", merged_into=None) == 1


# --- identities ---------------------------------------------------------------------------------


async def test_email_hash_finds_the_person_another_dialect_named(client, uow, tracify_source) -> None:
    tracktor = await source_service.create_source(uow, name="web", dialect="tracktor", source_id="tt-web")
    # As if Tracktor's /set had named ann by her plain address: the core stores its hash.
    ann = await ingest(
        IngestBatch(
            source=SourceRef(tracktor.id, "tracktor"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            identities=[IdentityRef("email_sha256", email_sha256("ann@example.com"))],
            identified=True,
        ),
        uow,
    )
    # The shop's backend hashes the address the seed's way; upper-case hex is the same hash.
    hashed = hashlib.sha256(" Ann@Example.com ".strip().lower().encode()).hexdigest()
    sent = purchase("D-1")
    sent["identity_data"] = {hashed.upper(): 1, **IP_UA}
    body = (await post(client, [sent])).json()
    assert body["events"][0]["profile_id"] == ann.profile_id
    assert await count(uow, "profiles") == 1
    assert await count(uow, "identities", kind="email_sha256") == 1


async def test_visit_hash_shares_a_session_and_an_anonymous_profile_until_an_email_shows_up(
    client, uow, tracify_source
) -> None:
    first = (await post(client, [event(at=T0)])).json()["events"][0]
    second = (await post(client, [event("productview", at=T0 + timedelta(minutes=5))])).json()["events"][0]
    assert second["profile_id"] == first["profile_id"]
    anonymous = await profile(client, first["profile_id"])
    assert anonymous["anonymous"] is True
    assert anonymous["visits"] == 1

    bought = (
        await post(client, [purchase("E-1", email="cy@example.com", at=T0 + timedelta(minutes=9))])
    ).json()
    # The email is new: the visit's anonymous profile becomes cy's.
    assert bought["events"][0]["profile_id"] == first["profile_id"]
    person = await profile(client, first["profile_id"])
    assert person["anonymous"] is False
    rows = await stored(client, first["profile_id"])
    assert len({row["session_id"] for row in rows}) == 1
    assert await count(uow, "sessions") == 1

    # After more than the session timeout of silence, the same hash opens a new visit.
    later = (await post(client, [event(at=T0 + timedelta(hours=2))])).json()["events"][0]
    assert later["profile_id"] == first["profile_id"]
    assert (await profile(client, first["profile_id"]))["visits"] == 2


async def test_an_anonymous_visit_joins_a_known_person_once_her_email_shows_up(
    client, uow, tracify_source
) -> None:
    known = (await post(client, [event(email="dee@example.com", visit="203.0.113.9|Safari")])).json()
    known_id = known["events"][0]["profile_id"]
    visit = "198.51.100.77|Firefox"
    browsing = [event(visit=visit, at=T0 + timedelta(minutes=m)) for m in (1, 2)]
    anonymous_id = (await post(client, browsing)).json()["events"][0]["profile_id"]
    assert anonymous_id != known_id
    # One request: more browsing, then the purchase that names her. The earlier event's
    # profile is reported as it is after the batch.
    batch = [
        event(visit=visit, at=T0 + timedelta(minutes=3)),
        purchase("F-1", email="dee@example.com", visit=visit, at=T0 + timedelta(minutes=4)),
    ]
    body = (await post(client, batch)).json()
    assert [e["profile_id"] for e in body["events"]] == [known_id, known_id]
    person = await profile(client, known_id)
    assert person["merged_from"] == [anonymous_id]
    assert len(await stored(client, known_id)) == 5
    assert await count(uow, "profiles", merged_into=None) == 1


async def test_ip_and_user_agent_hashes_are_context_and_never_join_profiles(
    client, uow, tracify_source
) -> None:
    # Same IP and browser, no email and no visit hash: nothing says it is one person.
    body = (await post(client, [event(visit=None), event(visit=None)])).json()
    assert body["events"][0]["profile_id"] != body["events"][1]["profile_id"]
    # Two people behind one IP and one browser, even with a shared visit hash, stay two.
    people = [event(email="eve@example.com"), event(email="fay@example.com")]
    answers = (await post(client, people)).json()["events"]
    assert answers[0]["profile_id"] != answers[1]["profile_id"]
    assert await count(uow, "profile_merges") == 0
    [row] = await stored(client, answers[0]["profile_id"])
    assert row["context"]["identity"]["ip_hash"] == sha("198.51.100.4")
    assert row["context"]["identity"]["user_agent_hash"] == sha("Mozilla/5.0")
    kinds = {i["kind"] for i in (await profile(client, answers[0]["profile_id"]))["identities"]}
    assert kinds == {"email_sha256", "visit_hash"}
    # Without a visit hash there is no visit to hold the event: it has no session.
    [lone] = await stored(client, body["events"][0]["profile_id"])
    assert lone["session_id"] is None
