"""InSend ``POST /watch/event`` (seed 003, JS Event API), wire to rows, on SQLite and PostgreSQL.

Each seed call ``insend('event', TYPE, PROPERTIES, VISITOR_INFO)`` is sent the way the
JS and PHP clients send it: ``app_key``, ``visitor_uid``, ``guest_uid`` and ``data`` (a JSON
string holding ``type``, ``properties``, ``visitor_info`` and the page) in a form body or
in the query string.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest

from tests.conftest import ADMIN, count, counts
from tests.helpers import fixture
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.core.sources import SourceInfo
from trackway.db.uow import SqlUnitOfWork

SEED = fixture("insend_seed_events.json")
TYPES = [name for name in SEED if not name.startswith("_")]
APP_KEY = "insend-shop"
PAGE = {
    "url": "https://shop.example/p/1?utm_source=news&utm_medium=email",
    "domain": "shop.example",
    "host": "shop.example",
    "path": "/p/1",
    "title": "Product 1",
    "referrer": "https://search.example/",
}
#: The seed's fields that Trackway keeps as exact decimals, stored as strings.
DECIMAL_FIELDS = {"qnt", "price", "revenue"}

Where = Literal["form", "query"]


@pytest.fixture
async def source(uow: SqlUnitOfWork) -> SourceInfo:
    return await source_service.create_source(uow, name="shop", dialect="insend", source_id=APP_KEY)


@pytest.fixture(params=["form", "query"])
def where(request: pytest.FixtureRequest) -> Where:
    """The JS and PHP clients send the fields as a form body; the seed also calls them query variables."""
    return request.param  # type: ignore[no-any-return]


def data_of(type_: str, properties: Any = None, visitor_info: Any = None, **extra: Any) -> str:
    """The ``data`` JSON string of one event, with the page the browser snippet adds."""
    data: dict[str, Any] = {"type": type_, **PAGE, **extra}
    if properties is not None:
        data["properties"] = properties
    if visitor_info is not None:
        data["visitor_info"] = visitor_info
    return json.dumps(data)


def seed_data(type_: str, **extra: Any) -> str:
    call = SEED[type_]
    return data_of(type_, call["properties"], call.get("visitor_info"), **extra)


async def send(
    client: httpx.AsyncClient,
    data: str | None,
    *,
    where: Where = "form",
    app_key: str | None = APP_KEY,
    visitor: str | None = None,
    guest: str | None = None,
    query: dict[str, str] | None = None,
) -> httpx.Response:
    """One ``/watch/event`` request; ``query`` adds query fields to a form post."""
    fields = {
        name: value
        for name, value in (
            ("app_key", app_key),
            ("visitor_uid", visitor),
            ("guest_uid", guest),
            ("data", data),
        )
        if value is not None
    }
    if where == "form":
        return await client.post("/watch/event", data=fields, params=query)
    return await client.post("/watch/event", params=fields)


async def ok(client: httpx.AsyncClient, data: str, **kwargs: Any) -> str:
    """Send an event that must succeed; the profile id it landed on."""
    response = await send(client, data, **kwargs)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["profile"]
    return str(body["profile"]["id"])


async def profile(client: httpx.AsyncClient, profile_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def events(client: httpx.AsyncClient, profile_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)
    return list(response.json()["items"])


async def cart(client: httpx.AsyncClient, profile_id: str) -> dict[str, Any]:
    """The profile's one cart in the InSend source."""
    (only,) = (await profile(client, profile_id))["carts"]
    assert only["source_id"] == APP_KEY
    return dict(only)


def lines(cart_view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(line["product_id"], line["qnt"]) for line in cart_view["items"]]


def as_stored(value: Any, key: str | None = None) -> Any:
    """The seed's properties as Trackway stores them: quantities, prices, revenue as exact strings."""
    if isinstance(value, dict):
        return {k: as_stored(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_stored(v) for v in value]
    if key in DECIMAL_FIELDS:
        return str(Decimal(str(value)))
    return value


def identities(view: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["kind"], i["value"]) for i in view["identities"]}


async def assert_nothing_written(uow: SqlUnitOfWork) -> None:
    written = await counts(uow)
    assert {k: v for k, v in written.items() if k != "sources"} == dict.fromkeys(
        ("events", "carts", "sessions", "identities", "profile_merges", "profiles"), 0
    )


# --- every event type of the seed ------------------------------------------------------------


@pytest.mark.parametrize("type_", TYPES)
async def test_seed_event_is_stored(client, uow, source, where: Where, type_: str) -> None:
    profile_id = await ok(client, seed_data(type_), where=where, guest="g-1")
    stored = await events(client, profile_id)
    if type_ == "update_info":
        assert stored == []  # only the traits change: see test_update_info_*
        return
    (event,) = stored
    assert event["type"] == type_
    assert event["properties"] == as_stored(SEED[type_]["properties"])
    assert event["context"]["page"] == PAGE
    assert event["session_id"] is not None
    assert event["source_id"] == APP_KEY


async def test_cart_events_change_the_cart_with_seed_values(client, uow, source) -> None:
    guest = {"guest": "g-cart"}
    profile_id = await ok(client, seed_data("add_to_cart"), **guest)
    assert (await cart(client, profile_id))["items"] == [
        {
            "product_id": "1",
            "qnt": "2",
            "price": "125.03",
            "product_name": "product",
            "product_url": "http://site.net/product/1",
        }
    ]
    await ok(client, seed_data("remove_from_cart"), **guest)
    emptied = await cart(client, profile_id)
    assert emptied["items"] == []
    assert emptied["total"] == "0"
    await ok(client, seed_data("update_cart"), **guest)
    full = await cart(client, profile_id)
    assert lines(full) == [("1", "1"), ("2", "15")]
    assert full["total"] == "2030.45"  # 125.15 + 15 * 127.02, exactly
    await ok(client, seed_data("purchase"), **guest)
    assert (await cart(client, profile_id))["items"] == []


async def test_decimals_are_parsed_from_the_json_text_exactly(client, uow, source) -> None:
    # 18 significant digits: a float would come back as 123456789012.34568.
    data = (
        '{"type": "add_to_cart", "properties": {"product_id": 7, "qnt": 1e2, '
        '"price": 123456789012.345678, "rating": 4.5}}'
    )
    profile_id = await ok(client, data, visitor="v-exact")
    (event,) = await events(client, profile_id)
    assert event["properties"] == {
        "product_id": "7",
        "qnt": "100",
        "price": "123456789012.345678",
        "rating": 4.5,
    }
    view = await cart(client, profile_id)
    assert view["items"][0]["price"] == "123456789012.345678"
    assert view["items"][0]["rating"] == 4.5  # an extra key keeps its JSON type
    assert view["total"] == "12345678901234.567800"


async def test_page_context_and_server_derived_visit(client, uow, source) -> None:
    attributes = {"lang": "en", "ab": ["b"]}
    first = await ok(client, seed_data("link", attributes=attributes, campaign="x"), visitor="v-page")
    second = await ok(client, seed_data("view_product"), visitor="v-page")
    assert first == second
    link, view = await events(client, first)
    assert link["context"]["page"] == PAGE
    assert link["context"]["attributes"] == attributes
    assert link["context"]["extra"] == {"campaign": "x"}
    # No session id in InSend: the visit is derived server-side, both events are one visit.
    assert link["session_id"] == view["session_id"] is not None
    assert (await profile(client, first))["visits"] == 1
    session = (await client.get(f"/api/sessions/{link['session_id']}", headers=ADMIN)).json()
    assert session["context"]["landing_page"] == PAGE["url"]
    assert session["context"]["page_referrer"] == PAGE["referrer"]
    assert session["context"]["utm"] == {"utm_source": "news", "utm_medium": "email"}
    assert session["event_count"] == 2


async def test_update_info_sets_traits_stores_no_event_and_opens_no_visit(client, uow, source) -> None:
    profile_id = await ok(client, seed_data("update_info"), visitor="v-info")
    view = await profile(client, profile_id)
    assert view["traits"] == {"email": "test@example.net"}
    assert await count(uow, "events") == 0
    assert await count(uow, "sessions") == 0
    assert view["visits"] == 0


# --- wire forms ----------------------------------------------------------------------------


async def test_form_values_win_over_query_values(client, uow, source) -> None:
    response = await send(
        client,
        seed_data("link"),
        visitor="from-form",
        query={"app_key": "not-a-source", "visitor_uid": "from-query", "data": "not json"},
    )
    assert response.status_code == 200, response.text
    assert await count(uow, "identities", kind="visitor", value="from-form") == 1
    assert await count(uow, "identities", kind="visitor", value="from-query") == 0


async def test_fields_split_between_query_and_form(client, uow, source) -> None:
    # The PHP client puts app_key in the URL and the rest in the body.
    response = await send(
        client, seed_data("link"), app_key=None, guest="g-split", query={"app_key": APP_KEY}
    )
    assert response.status_code == 200, response.text


async def test_php_shapes_empty_uid_empty_arrays_numeric_ids(client, uow, source) -> None:
    data = json.dumps(
        {"type": "view_product", "properties": {"product_id": 123}, "visitor_info": [], "attributes": []}
    )
    response = await client.post(
        "/watch/event", data={"app_key": APP_KEY, "visitor_uid": "42", "guest_uid": "", "data": data}
    )
    assert response.status_code == 200, response.text
    (event,) = await events(client, response.json()["profile"]["id"])
    assert event["properties"] == {"product_id": "123"}
    assert await count(uow, "identities", kind="guest") == 0
    assert await count(uow, "profile_merges") == 0
    empty_props = json.dumps({"type": "link", "properties": [], "visitor_info": None})
    assert (await send(client, empty_props, visitor="42")).status_code == 200


async def test_send_beacon_text_plain_body_is_read_as_fields(client, uow, source) -> None:
    body = httpx.QueryParams({"app_key": APP_KEY, "guest_uid": "g-beacon", "data": seed_data("link")})
    response = await client.post(
        "/watch/event", content=str(body), headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 200, response.text
    assert await count(uow, "events", type="link") == 1


# --- carts ---------------------------------------------------------------------------------


def line(product_id: str, qnt: Any, price: Any = "10.00", **extra: Any) -> dict[str, Any]:
    return {"product_id": product_id, "qnt": qnt, "price": price, **extra}


async def test_update_cart_replaces_and_empty_items_clear(client, uow, source) -> None:
    who = {"visitor": "v-replace"}
    profile_id = await ok(client, data_of("update_cart", {"items": [line("1", 1), line("2", 2)]}), **who)
    await ok(client, data_of("update_cart", {"items": [line("3", 4, "2.50")]}), **who)
    replaced = await cart(client, profile_id)
    assert lines(replaced) == [("3", "4")]
    assert replaced["total"] == "10.00"
    await ok(client, data_of("update_cart", {"items": []}), **who)
    cleared = await cart(client, profile_id)
    assert cleared["items"] == []
    assert cleared["item_count"] == 0
    assert await count(uow, "events", type="update_cart") == 3


async def test_add_and_remove_arithmetic(client, uow, source) -> None:
    who = {"guest": "g-arith"}
    profile_id = await ok(client, data_of("add_to_cart", line("1", 2, "1.10")), **who)
    await ok(client, data_of("add_to_cart", line("1", 1, "1.10")), **who)
    await ok(client, data_of("add_to_cart", line("2", "0.5", "3.00")), **who)
    assert lines(await cart(client, profile_id)) == [("1", "3"), ("2", "0.5")]
    await ok(client, data_of("remove_from_cart", {"product_id": "1", "qnt": 1}), **who)
    # Removing more than the cart holds removes the line; an absent product changes nothing.
    await ok(client, data_of("remove_from_cart", {"product_id": "2", "qnt": 5}), **who)
    await ok(client, data_of("remove_from_cart", {"product_id": "9", "qnt": 1}), **who)
    view = await cart(client, profile_id)
    assert lines(view) == [("1", "2")]
    assert view["total"] == "2.20"


async def test_purchase_empties_the_cart_and_a_resent_purchase_is_stored_once(client, uow, source) -> None:
    who = {"visitor": "v-buy"}
    profile_id = await ok(client, seed_data("update_cart"), **who)
    assert (await cart(client, profile_id))["item_count"] == 2
    purchase = seed_data("purchase")
    assert await ok(client, purchase, **who) == profile_id
    assert (await cart(client, profile_id))["items"] == []
    # The thank-you page reloaded: the same order again is one purchase event.
    assert await ok(client, purchase, **who) == profile_id
    assert await count(uow, "events", type="purchase") == 1
    (stored,) = [e for e in await events(client, profile_id) if e["type"] == "purchase"]
    assert stored["properties"]["order_id"] == "12345"
    assert stored["properties"]["revenue"] == "99.99"
    assert [(i["product_id"], i["qnt"], i["price"]) for i in stored["properties"]["items"]] == [
        ("1", "1", "125.15"),
        ("2", "15", "127.02"),
    ]
    # Another order is another event.
    other = data_of("purchase", {"order_id": 12346, "revenue": "5"})
    await ok(client, other, **who)
    assert await count(uow, "events", type="purchase") == 2


# --- visitor_info, identities, merges ------------------------------------------------------


async def test_visitor_info_sets_traits_and_an_email_identity(client, uow, source) -> None:
    info = {"first_name": "John", "email": " Test@Example.net ", "phone": None, "score": 4.5, "age": 40}
    profile_id = await ok(client, data_of("link", {}, info), guest="g-info")
    found = (
        await client.get("/api/profiles", params={"identity": "email:test@example.net"}, headers=ADMIN)
    ).json()
    (view,) = found["items"]
    assert view["id"] == profile_id
    # null says "not known here": no trait. Numbers keep their JSON type.
    assert view["traits"] == {"first_name": "John", "email": "Test@Example.net", "score": 4.5, "age": 40}
    assert ("email_sha256", email_sha256("test@example.net")) in identities(view)
    assert view["anonymous"] is False  # an email names the person
    # Traits accumulate; a later update overwrites only what it names.
    await ok(client, data_of("update_info", {}, {"first_name": "Johnny"}), guest="g-info")
    assert (await profile(client, profile_id))["traits"]["first_name"] == "Johnny"


async def test_the_email_joins_profiles_across_sources(client, uow, source) -> None:
    await source_service.create_source(uow, name="second shop", dialect="insend", source_id="insend-second")
    info = {"email": "ann@example.org"}
    first = await ok(client, data_of("link", {}, info), visitor="ann")
    second = await ok(client, data_of("link", {}, info), visitor="ann-elsewhere", app_key="insend-second")
    assert first == second
    # visitor uids are the sites' own: the same uid in another source is another person.
    third = await ok(client, data_of("link"), visitor="ann", app_key="insend-second")
    assert third != first


async def test_a_changed_email_unlinks_the_old_address(client, uow, source) -> None:
    """As Tracktor's: the address a visitor replaced no longer names them."""
    profile_id = await ok(client, data_of("link", {}, {"email": "bea@exmaple.org"}), visitor="bea")
    await ok(client, data_of("update_info", {}, {"email": "bea@example.org"}), visitor="bea")
    view = await profile(client, profile_id)
    assert {v for k, v in identities(view) if k == "email_sha256"} == {email_sha256("bea@example.org")}
    # Someone else giving the old (mistyped) address is someone else.
    assert await ok(client, data_of("link", {}, {"email": "bea@exmaple.org"}), visitor="other") != profile_id
    assert await count(uow, "profile_merges") == 0


async def test_guest_is_anonymous_visitor_is_not(client, uow, source) -> None:
    guest = await ok(client, seed_data("link"), guest="g-anon")
    visitor = await ok(client, seed_data("link"), visitor="v-known")
    assert (await profile(client, guest))["anonymous"] is True
    assert (await profile(client, visitor))["anonymous"] is False


async def test_journey_guest_browses_fills_cart_registers_buys(client, uow, source) -> None:
    guest = await ok(client, seed_data("link"), guest="g-journey")
    assert await ok(client, seed_data("view_product"), guest="g-journey") == guest
    assert await ok(client, seed_data("add_to_cart"), guest="g-journey") == guest
    assert await ok(client, seed_data("update_cart"), guest="g-journey") == guest

    # Registration: both uids once. The guest's profile folds into the visitor's.
    registered = await ok(
        client,
        data_of("custom", {"key": "registration"}, {"first_name": "John", "email": "john@example.net"}),
        visitor="v-journey",
        guest="g-journey",
    )
    assert registered != guest
    # From now on the shop sends the visitor uid only.
    assert await ok(client, seed_data("purchase"), visitor="v-journey") == registered

    view = await profile(client, registered)
    assert view["merged_from"] == [guest]
    assert view["anonymous"] is False
    assert view["traits"] == {
        "first_name": "John",
        "last_name": "Smith",
        "email": "test@example.net",
        "phone": "555555",
    }
    # The seed's purchase carries another email in visitor_info: it replaces the trait, and the
    # address it replaced no longer names the person.
    assert {
        ("visitor", "v-journey"),
        ("guest", "g-journey"),
        ("email_sha256", email_sha256("test@example.net")),
    } == identities(view)
    assert [line["product_id"] for line in (await cart(client, registered))["items"]] == []
    history = await events(client, registered)
    assert [e["type"] for e in history] == [
        "link",
        "view_product",
        "add_to_cart",
        "update_cart",
        "custom",
        "purchase",
        "cart-purchased",  # generated: the guest's cart lifecycle, carried over by the merge, ends
    ]
    assert history[-1]["context"]["generated"] is True
    # The guest's old id still answers, with its survivor.
    old = await profile(client, guest)
    assert old["id"] == registered
    assert old["requested_id"] == guest
    assert await count(uow, "profiles", merged_into=None) == 1
    merge = await count(uow, "profile_merges", from_profile_id=guest, into_profile_id=registered)
    assert merge == 1
    # The guest uid, sent alone again (same browser), lands on the registered profile.
    assert await ok(client, seed_data("link"), guest="g-journey") == registered


async def test_registration_moves_the_guest_cart_to_a_visitor_without_one(client, uow, source) -> None:
    guest = await ok(client, data_of("update_cart", {"items": [line("g", 2, "5.50")]}), guest="g-move")
    visitor = await ok(client, seed_data("link"), visitor="v-move")
    merged = await ok(client, seed_data("link"), visitor="v-move", guest="g-move")
    assert merged == visitor != guest
    view = await cart(client, visitor)
    assert lines(view) == [("g", "2")]
    assert view["total"] == "11.00"
    assert await count(uow, "carts") == 1


async def test_registration_keeps_the_visitor_cart_when_it_has_items(client, uow, source) -> None:
    await ok(client, data_of("update_cart", {"items": [line("g", 1)]}), guest="g-keep")
    visitor = await ok(client, data_of("update_cart", {"items": [line("v", 3)]}), visitor="v-keep")
    await ok(client, seed_data("link"), visitor="v-keep", guest="g-keep")
    assert lines(await cart(client, visitor)) == [("v", "3")]
    assert await count(uow, "carts") == 1


async def test_concurrent_registrations_end_on_one_profile(client, uow, source) -> None:
    await ok(client, seed_data("add_to_cart"), guest="g-race")
    data = seed_data("link")
    responses = await asyncio.gather(
        *(send(client, data, visitor="v-race", guest="g-race") for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["profile"]["id"] for r in responses}) == 1
    assert await count(uow, "profiles", merged_into=None) == 1
    assert await count(uow, "profile_merges") == 1
    assert await count(uow, "events") == 9


# --- rejections: status, JSON body naming the field, nothing written -------------------------


@pytest.mark.parametrize("case", ["missing", "unknown", "disabled", "other-dialect"])
async def test_invalid_app_key_is_401(client, uow, where: Where, case: str) -> None:
    app_key: str | None = f"key-{case}"
    if case == "missing":
        app_key = None
    elif case == "disabled":
        await source_service.create_source(uow, name="d", dialect="insend", source_id=app_key, enabled=False)
    elif case == "other-dialect":
        await source_service.create_source(uow, name="t", dialect="tracardi", source_id=app_key)
    response = await send(client, seed_data("link"), where=where, app_key=app_key, guest="g")
    assert response.status_code == 401
    assert response.json() == {"detail": "Access denied. Invalid source."}
    await assert_nothing_written(uow)


def bad(type_: str, properties: Any, visitor_info: Any = None) -> str:
    return data_of(type_, properties, visitor_info)


BAD_INPUT = {
    "neither uid": ({"data": seed_data("link")}, [["visitor_uid"], ["guest_uid"]]),
    "uid too long": ({"guest_uid": "g" * 201, "data": seed_data("link")}, [["guest_uid"]]),
    "data missing": ({"guest_uid": "g"}, [["data"]]),
    "data not json": ({"guest_uid": "g", "data": "{type: link}"}, [["data"]]),
    "data NaN": ({"guest_uid": "g", "data": '{"type": "link", "properties": {"x": NaN}}'}, [["data"]]),
    "data not an object": ({"guest_uid": "g", "data": '["link"]'}, [["data"]]),
    "data a string": ({"guest_uid": "g", "data": '"link"'}, [["data"]]),
    "type missing": ({"guest_uid": "g", "data": '{"properties": {}}'}, [["data", "type"]]),
    "unknown type": ({"guest_uid": "g", "data": bad("page_view", {})}, [["data", "type"]]),
    "properties not an object": ({"guest_uid": "g", "data": bad("link", "x")}, [["data", "properties"]]),
    "custom without key": ({"guest_uid": "g", "data": bad("custom", {})}, [["data", "properties", "key"]]),
    "custom with empty key": (
        {"guest_uid": "g", "data": bad("custom", {"key": " "})},
        [["data", "properties", "key"]],
    ),
    "file without file_url": (
        {"guest_uid": "g", "data": bad("file", {})},
        [["data", "properties", "file_url"]],
    ),
    "mailto without email": (
        {"guest_uid": "g", "data": bad("mailto", {})},
        [["data", "properties", "email"]],
    ),
    "view_product without product_id": (
        {"guest_uid": "g", "data": bad("view_product", {"price": 1})},
        [["data", "properties", "product_id"]],
    ),
    "empty product_id": (
        {"guest_uid": "g", "data": bad("add_to_cart", line("", 1))},
        [["data", "properties", "product_id"]],
    ),
    "boolean product_id": (
        {"guest_uid": "g", "data": bad("add_to_cart", line(True, 1))},  # type: ignore[arg-type]
        [["data", "properties", "product_id"]],
    ),
    "zero qnt": (
        {"guest_uid": "g", "data": bad("add_to_cart", line("1", 0))},
        [["data", "properties", "qnt"]],
    ),
    "qnt not a number": (
        {"guest_uid": "g", "data": bad("remove_from_cart", {"product_id": "1", "qnt": "two"})},
        [["data", "properties", "qnt"]],
    ),
    "bad qnt in an item": (
        {"guest_uid": "g", "data": bad("update_cart", {"items": [line("1", 1), line("2", -3)]})},
        [["data", "properties", "items", 1, "qnt"]],
    ),
    "price not a number": (
        {"guest_uid": "g", "data": bad("add_to_cart", line("1", 1, "cheap"))},
        [["data", "properties", "price"]],
    ),
    "negative price": (
        {"guest_uid": "g", "data": bad("update_cart", {"items": [line("1", 1, -1)]})},
        [["data", "properties", "items", 0, "price"]],
    ),
    "price with too many decimals": (
        {"guest_uid": "g", "data": bad("add_to_cart", line("1", 1, "0.0000001"))},
        [["data", "properties", "price"]],
    ),
    "price missing": (
        {"guest_uid": "g", "data": bad("add_to_cart", {"product_id": "1", "qnt": 1})},
        [["data", "properties", "price"]],
    ),
    "items not a list": (
        {"guest_uid": "g", "data": bad("update_cart", {"items": {}})},
        [["data", "properties", "items"]],
    ),
    "purchase without order_id": (
        {"guest_uid": "g", "data": bad("purchase", {"revenue": 1})},
        [["data", "properties", "order_id"]],
    ),
    "purchase without revenue": (
        {"guest_uid": "g", "data": bad("purchase", {"order_id": "1"})},
        [["data", "properties", "revenue"]],
    ),
    "bad email in visitor_info": (
        {"guest_uid": "g", "data": bad("update_info", {}, {"email": "not-an-address"})},
        [["data", "visitor_info", "email"]],
    ),
    "visitor_info not an object": (
        {"guest_uid": "g", "data": bad("update_info", {}, "john")},
        [["data", "visitor_info"]],
    ),
    "NUL in a property": (
        {"guest_uid": "g", "data": bad("link", {"note": "a\u0000b"})},
        [["data", "properties", "note"]],
    ),
    "integer too big to store": (
        {"guest_uid": "g", "data": bad("link", {"n": 2**70})},
        [["data", "properties", "n"]],
    ),
}


@pytest.mark.parametrize(("fields", "locs"), list(BAD_INPUT.values()), ids=list(BAD_INPUT))
async def test_bad_input_is_422_naming_the_field(client, uow, source, where: Where, fields, locs) -> None:
    fields = {"app_key": APP_KEY, **fields}
    if where == "form":
        response = await client.post("/watch/event", data=fields)
    else:
        response = await client.post("/watch/event", params=fields)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    place = "body" if where == "form" else "query"
    for loc in locs:
        assert [place, *loc] in [error["loc"] for error in errors], errors
    await assert_nothing_written(uow)


async def test_errors_name_where_each_field_was_sent(client, uow, source) -> None:
    response = await client.post(
        "/watch/event",
        params={"app_key": APP_KEY, "data": "nope"},
        data={"guest_uid": "g"},
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "data"]]


async def test_not_a_form_body_is_415(client, uow, source) -> None:
    response = await client.post(
        "/watch/event",
        json={"app_key": APP_KEY, "guest_uid": "g", "data": seed_data("link")},
    )
    assert response.status_code == 415
    assert "x-www-form-urlencoded" in response.json()["detail"]
    await assert_nothing_written(uow)


async def test_body_that_is_not_utf8_is_422(client, uow, source) -> None:
    response = await client.post(
        "/watch/event",
        content=b"app_key=" + APP_KEY.encode() + b"&guest_uid=%FF&data=%7B%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    await assert_nothing_written(uow)


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 2048}])
async def test_oversized_body_is_413(client, uow, source) -> None:
    data = data_of("link", {"blob": "x" * 4096})
    response = await send(client, data, guest="g-big")
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    await assert_nothing_written(uow)
