"""Issue #14's table, row by row, on SQLite and PostgreSQL: each hostile value answers a 4xx
naming it (or is stored exactly), writes nothing when refused, and never leaves a row the
read API cannot answer for."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ADMIN
from tests.hostile.conftest import (
    INSEND,
    INVALID_SOURCE,
    SECRET,
    TRACARDI,
    TRACIFY,
    TRACKTOR,
    insend_data,
    post_json,
    readable,
    row_counts,
    tracardi_payload,
    tracify_event,
)
from trackway.core.values import MAX_DEPTH
from trackway.db.uow import SqlUnitOfWork

pytestmark = pytest.mark.usefixtures("sources")

BIG = 2**64  # beyond signed and unsigned 64 bits alike


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def deep_json(levels: int) -> str:
    """``levels`` nested objects as JSON text, written without recursion."""
    return '{"k":' * levels + "1" + "}" * levels


async def refused(
    response: httpx.Response,
    uow: SqlUnitOfWork,
    before: dict[str, int],
    loc: list[Any] | None,
    status: int = 422,
) -> list[dict[str, Any]]:
    """A JSON 4xx naming ``loc`` (when given), and not a row written."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if loc is not None:
        locs = [error["loc"] for error in body["detail"]]
        assert loc in locs, locs
    assert await row_counts(uow) == before
    return body["detail"] if isinstance(body["detail"], list) else []


def raw(value: Any, token: str) -> str:
    """``value`` as JSON text with the string ``"@"`` replaced by ``token`` (``NaN``, ``1e400``)."""
    return json.dumps(value).replace('"@"', token)


def tracktor_query(**fields: str) -> str:
    return "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in {"sid": TRACKTOR, **fields}.items())


# --- integers beyond 64 bits ----------------------------------------------------------------


TRACARDI_INTEGER_BEYOND_64_BITS_IS_422_CASES = [
    (tracardi_payload(properties={"n": BIG}), ["body", "events", 0, "properties", "n"]),
    (tracardi_payload(context={"a": [1, -BIG]}), ["body", "events", 0, "context", "a", 1]),
    (tracardi_payload(options={"o": 2**63}), ["body", "events", 0, "options", "o"]),
    ({**tracardi_payload(), "properties": {"x": BIG}}, ["body", "properties", "x"]),
    ({**tracardi_payload(), "context": {"x": BIG}}, ["body", "context", "x"]),
    ({**tracardi_payload(), "options": {"x": BIG}}, ["body", "options", "x"]),
]


async def test_tracardi_integer_beyond_64_bits_is_422(client, uow) -> None:
    for payload, loc in TRACARDI_INTEGER_BEYOND_64_BITS_IS_422_CASES:
        before = await row_counts(uow)
        await refused(await post_json(client, "/track", payload), uow, before, loc)


async def test_signed_64_bit_integers_are_stored_exactly(client, uow) -> None:
    extremes = {"max": 2**63 - 1, "min": -(2**63)}
    response = await post_json(client, "/track", tracardi_payload(properties=extremes))
    assert response.status_code == 200, response.text
    events = await client.get(f"/api/profiles/{response.json()['profile']['id']}/events", headers=ADMIN)
    assert events.json()["items"][0]["properties"] == extremes


async def test_tracify_integer_beyond_64_bits_is_422(client, uow) -> None:
    before = await row_counts(uow)
    response = await post_json(
        client, "/tracify/events", {"events": [tracify_event(note=BIG)]}, **{"X-API-Key": SECRET}
    )
    await refused(response, uow, before, ["body", "events", 0, "data", "note"])
    big_order = tracify_event("purchase", order_id=BIG, currency="EUR", amount="1.00")
    response = await post_json(client, "/tracify/events", {"events": [big_order]}, **{"X-API-Key": SECRET})
    await refused(response, uow, before, ["body", "events", 0, "data", "order_id"])


async def test_tracktor_integer_beyond_64_bits_is_422_not_a_float(client, uow) -> None:
    before = await row_counts(uow)
    query = tracktor_query(id="u", action="a", data=json.dumps({"n": 2**70}))
    await refused(await client.get(f"/track?{query}"), uow, before, ["query", "data", "n"])
    await refused(
        await client.get(f"/set?{tracktor_query(id='u', data=json.dumps({'n': BIG}))}"),
        uow,
        before,
        ["query", "data", "n"],
    )


async def test_insend_integer_beyond_64_bits_is_422(client, uow) -> None:
    before = await row_counts(uow)
    fields = {"app_key": INSEND, "guest_uid": "g", "data": insend_data(properties={"n": 2**63})}
    await refused(
        await client.post("/watch/event", data=fields), uow, before, ["body", "data", "properties", "n"]
    )


# --- NaN, Infinity, 1e400: refused by every dialect -----------------------------------------


NON_FINITE_NUMBERS_ARE_422_IN_EVERY_DIALECT_CASES = ["NaN", "Infinity", "-Infinity", "1e400"]


async def test_non_finite_numbers_are_422_in_every_dialect(client, uow) -> None:
    for token in NON_FINITE_NUMBERS_ARE_422_IN_EVERY_DIALECT_CASES:
        before = await row_counts(uow)
        body = raw(tracardi_payload(properties={"x": "@"}), token)
        await refused(await post_json(client, "/track", body), uow, before, None)
        event = raw({"events": [tracify_event(note="@")]}, token)
        response = await post_json(client, "/tracify/events", event, **{"X-API-Key": SECRET})
        await refused(response, uow, before, None)
        query = tracktor_query(id="u", action="a", data=raw({"x": "@"}, token))
        await refused(
            await client.get(f"/track?{query}"), uow, before, ["query", "data"] if token != "1e400" else None
        )
        data = raw({"type": "link", "properties": {"x": "@"}}, token)
        fields = {"app_key": INSEND, "guest_uid": "g", "data": data}
        await refused(await client.post("/watch/event", data=fields), uow, before, None)


async def test_finite_numbers_name_the_field(client, uow) -> None:
    before = await row_counts(uow)
    body = raw(tracardi_payload(properties={"x": "@"}), "NaN")
    await refused(
        await post_json(client, "/track", body), uow, before, ["body", "events", 0, "properties", "x"]
    )
    query = tracktor_query(id="u", action="a", data='{"x": 1e400}')
    await refused(await client.get(f"/track?{query}"), uow, before, ["query", "data", "x"])


# --- U+0000 ---------------------------------------------------------------------------------


TRACARDI_NUL_IS_422_CASES = [
    (tracardi_payload(properties={"a\x00": 1}), ["body", "events", 0, "properties", "a\x00"]),
    (tracardi_payload(properties={"a": "x\x00"}), ["body", "events", 0, "properties", "a"]),
    (
        tracardi_payload(context={"page": {"title": "\x00"}}),
        ["body", "events", 0, "context", "page", "title"],
    ),
    ({"source": {"id": TRACARDI}, "events": [{"type": "page\x00view"}]}, ["body", "events", 0, "type"]),
    (tracardi_payload(id="e\x00"), ["body", "events", 0, "id"]),
    (tracardi_payload(tags=["ok", "t\x00"]), ["body", "events", 0, "tags", 1]),
    ({**tracardi_payload(), "session": {"id": "s\x00"}}, ["body", "session", "id"]),
    ({**tracardi_payload(), "profile": {"id": "\x00"}}, ["body", "profile", "id"]),
]


async def test_tracardi_nul_is_422(client, uow) -> None:
    for payload, loc in TRACARDI_NUL_IS_422_CASES:
        before = await row_counts(uow)
        await refused(await post_json(client, "/track", payload), uow, before, loc)


async def test_tracify_nul_is_422(client, uow) -> None:
    before = await row_counts(uow)
    key = {"X-API-Key": SECRET}
    with_url = {**tracify_event(), "url": "https://shop.example/\x00"}
    response = await post_json(client, "/tracify/events", {"events": [with_url]}, **key)
    await refused(response, uow, before, ["body", "events", 0, "url"])
    order = tracify_event("purchase", order_id="A\x001", currency="EUR", amount="1.00")
    response = await post_json(client, "/tracify/events", {"events": [order]}, **key)
    await refused(response, uow, before, ["body", "events", 0, "data", "order_id"])
    response = await post_json(client, "/tracify/events", {"events": [tracify_event(**{"k\x00": 1})]}, **key)
    await refused(response, uow, before, ["body", "events", 0, "data", "k\x00"])


TRACKTOR_NUL_IS_422_CASES = [
    ("/set", {"id": "u", "data": json.dumps({"plan": "gold\x00"})}, ["query", "data", "plan"]),
    ("/set", {"id": "u", "data": json.dumps({"pl\x00an": "gold"})}, ["query", "data", "pl\x00an"]),
    ("/set", {"id": "u\x00", "data": "{}"}, ["query", "id"]),
    ("/track", {"id": "u", "action": "a\x00"}, ["query", "action"]),
    ("/alias", {"srcid": "a", "destid": "b\x00"}, ["query", "destid"]),
]


async def test_tracktor_nul_is_422(client, uow) -> None:
    for path, fields, loc in TRACKTOR_NUL_IS_422_CASES:
        before = await row_counts(uow)
        await refused(await client.get(f"{path}?{tracktor_query(**fields)}"), uow, before, loc)
        form = {"sid": TRACKTOR, **fields}
        await refused(await client.post(path, data=form), uow, before, ["body", *loc[1:]])


INSEND_NUL_IS_422_CASES = [
    ({"guest_uid": "g\x00"}, ["body", "guest_uid"]),
    ({"visitor_uid": "\x00"}, ["body", "visitor_uid"]),
    ({"data": insend_data(properties={"note": "\x00"})}, ["body", "data", "properties", "note"]),
    ({"data": insend_data(url="https://x/\x00")}, ["body", "data", "url"]),
    ({"data": insend_data("link\x00")}, ["body", "data", "type"]),
]


async def test_insend_nul_is_422(client, uow) -> None:
    for fields, loc in INSEND_NUL_IS_422_CASES:
        before = await row_counts(uow)
        sent = {"app_key": INSEND, "guest_uid": "g", "data": insend_data(), **fields}
        await refused(await client.post("/watch/event", data=sent), uow, before, loc)


# --- U+0000 in the source id: 401 before anything else --------------------------------------


async def test_nul_source_id_is_401_in_every_dialect(client, uow) -> None:
    before = await row_counts(uow)
    payload = {**tracardi_payload(), "source": {"id": TRACARDI + "\x00"}}
    await refused(await post_json(client, "/track", payload), uow, before, None, 401)
    for path in (
        "/set?sid=%00&id=u&data=%7B%7D",
        "/track?sid=%00&id=u&action=a",
        "/alias?sid=%00&srcid=a&destid=b",
    ):
        response = await client.get(path)
        await refused(response, uow, before, None, 401)
        assert response.json() == INVALID_SOURCE
    for where in ("params", "data"):
        fields = {"app_key": "\x00", "guest_uid": "g", "data": insend_data()}
        response = await client.post("/watch/event", **{where: fields})
        await refused(response, uow, before, None, 401)
        assert response.json() == INVALID_SOURCE
    for site in ("\x00", TRACIFY + "\x00", " ", "x" * 129):
        event = {**tracify_event(), "customer_site_id": site}
        response = await post_json(client, "/tracify/events", {"events": [event]}, **{"X-API-Key": SECRET})
        await refused(response, uow, before, None, 401)
        assert response.json() == INVALID_SOURCE


# --- a URL that does not split ---------------------------------------------------------------


TRACARDI_PAGE_URL_IS_STORED_AS_GIVEN_WITHOUT_UTM_CASES = [
    "http://[x/",
    "http://[x/?utm_source=a",
    "https://ok.example/?utm_source=%00&utm_medium=m",
]


async def test_tracardi_page_url_is_stored_as_given_without_utm(client, uow) -> None:
    for url in TRACARDI_PAGE_URL_IS_STORED_AS_GIVEN_WITHOUT_UTM_CASES:
        payload = {
            **tracardi_payload(),
            "context": {"page": {"url": url}},
            "session": {"id": str(uuid.uuid4())},
        }
        response = await post_json(client, "/track", payload)
        assert response.status_code == 200, response.text
        body = response.json()
        events = (await client.get(f"/api/profiles/{body['profile']['id']}/events", headers=ADMIN)).json()
        assert events["items"][0]["context"]["page"]["url"] == url
        session = (await client.get(f"/api/sessions/{body['session']['id']}", headers=ADMIN)).json()
        assert session["context"]["landing_page"] == url
        expected_utm = {"utm_medium": "m"} if url.startswith("https://ok") else None
        assert session["context"].get("utm") == expected_utm


async def test_insend_url_that_does_not_split_is_kept(client, uow) -> None:
    fields = {"app_key": INSEND, "guest_uid": "g", "data": insend_data(url="http://[x/?utm_source=a")}
    response = await client.post("/watch/event", data=fields)
    assert response.status_code == 200, response.text
    await readable(client, response.json()["profile"]["id"])


async def test_tracify_url_parameters_that_decode_to_nul_are_left_out(client, uow) -> None:
    event = {**tracify_event(), "url": "https://shop.example/?utm_source=%00&utm_medium=m"}
    response = await post_json(client, "/tracify/events", {"events": [event]}, **{"X-API-Key": SECRET})
    assert response.status_code == 200, response.text
    profile_id = response.json()["events"][0]["profile_id"]
    events = (await client.get(f"/api/profiles/{profile_id}/events", headers=ADMIN)).json()
    assert events["items"][0]["properties"]["url_parameters"] == {"utm_medium": "m"}


# --- event times ----------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat()


TRACARDI_EVENT_TIME_OUT_OF_RANGE_IS_422_CASES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00Z",
    "0999-06-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:30:00+01:00",
    "FUTURE",
]


async def test_tracardi_event_time_out_of_range_is_422(client, uow) -> None:
    for time in TRACARDI_EVENT_TIME_OUT_OF_RANGE_IS_422_CASES:
        if time == "FUTURE":
            time = _iso(datetime.now(UTC) + timedelta(days=2))
        before = await row_counts(uow)
        response = await post_json(client, "/track", tracardi_payload(time=time))
        await refused(response, uow, before, ["body", "events", 0, "time"])


TRACARDI_EVENT_TIME_IN_RANGE_IS_STORED_AND_READABLE_CASES = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T01:00:00+01:00",
    "NEAR_FUTURE",
]


async def test_tracardi_event_time_in_range_is_stored_and_readable(client, uow) -> None:
    for time in TRACARDI_EVENT_TIME_IN_RANGE_IS_STORED_AND_READABLE_CASES:
        if time == "NEAR_FUTURE":
            time = _iso(datetime.now(UTC) + timedelta(hours=23))
        response = await post_json(client, "/track", tracardi_payload(time=time))
        assert response.status_code == 200, response.text
        await readable(client, response.json()["profile"]["id"])
        events = (
            await client.get(f"/api/profiles/{response.json()['profile']['id']}/events", headers=ADMIN)
        ).json()
        assert datetime.fromisoformat(events["items"][0]["time"]) == datetime.fromisoformat(
            time.replace("Z", "+00:00")
        )


async def test_other_dialects_event_times_are_in_the_same_range(client, uow) -> None:
    before = await row_counts(uow)
    for ts in (
        "-1",
        "0" if False else "-86400",
        str(int((datetime.now(UTC) + timedelta(days=2)).timestamp())),
    ):
        await refused(
            await client.get(f"/track?{tracktor_query(id='u', action='a', ts=ts)}"),
            uow,
            before,
            ["query", "ts"],
        )
    ok = await client.get(f"/track?{tracktor_query(id='u', action='a', ts='0')}")
    assert ok.status_code == 200, ok.text
    before = await row_counts(uow)
    for moment in ("0001-01-01 00:00:00", "1969-12-31 23:59:59", "9999-12-31 23:59:59"):
        event = {**tracify_event(), "datetime": moment}
        response = await post_json(client, "/tracify/events", {"events": [event]}, **{"X-API-Key": SECRET})
        await refused(response, uow, before, ["body", "events", 0, "datetime"])


# --- Tracify: a type that is no string -------------------------------------------------------


TRACIFY_ODD_TYPE_IS_401_WITH_A_BAD_KEY_AND_422_WITH_THE_RIGHT_ONE_CASES = [{}, [], 7, None]


async def test_tracify_odd_type_is_401_with_a_bad_key_and_422_with_the_right_one(client, uow) -> None:
    for kind in TRACIFY_ODD_TYPE_IS_401_WITH_A_BAD_KEY_AND_422_WITH_THE_RIGHT_ONE_CASES:
        before = await row_counts(uow)
        body = {"events": [{**tracify_event(), "type": kind}]}
        for key in ("wrong", SECRET[:-1]):
            response = await post_json(client, "/tracify/events", body, **{"X-API-Key": key})
            await refused(response, uow, before, None, 401)
            assert response.json() == INVALID_SOURCE
        response = await post_json(client, "/tracify/events", body, **{"X-API-Key": SECRET})
        await refused(response, uow, before, ["body", "events", 0, "type"])


# --- lone surrogates ------------------------------------------------------------------------


INSEND_LONE_SURROGATE_IS_422_CASES = [
    ('{"type": "link", "properties": {"x": "\\ud800"}}', ["body", "data", "properties", "x"]),
    ('{"type": "link", "properties": {"\\udfff": 1}}', ["body", "data", "properties", "\\udfff"]),
    ('{"type": "link", "title": "a\\ud83d"}', ["body", "data", "title"]),
    (
        '{"type": "update_info", "visitor_info": {"first_name": "\\udc00"}}',
        ["body", "data", "visitor_info", "first_name"],
    ),
]


async def test_insend_lone_surrogate_is_422(client, uow) -> None:
    for data, loc in INSEND_LONE_SURROGATE_IS_422_CASES:
        before = await row_counts(uow)
        fields = {"app_key": INSEND, "guest_uid": "g", "data": data}
        await refused(await client.post("/watch/event", data=fields), uow, before, loc)


async def test_lone_surrogate_escapes_are_422_in_the_json_dialects(client, uow) -> None:
    before = await row_counts(uow)
    body = raw(tracardi_payload(properties={"x": "@"}), '"\\ud800"')
    await refused(await post_json(client, "/track", body), uow, before, None)
    event = raw({"events": [tracify_event(note="@")]}, '"\\ud800"')
    response = await post_json(client, "/tracify/events", event, **{"X-API-Key": SECRET})
    await refused(response, uow, before, None)
    query = tracktor_query(id="u", action="a", data='{"x": "\\udfff"}')
    await refused(await client.get(f"/track?{query}"), uow, before, ["query", "data"])


async def test_a_surrogate_pair_is_one_character_and_stored(client, uow) -> None:
    fields = {"app_key": INSEND, "guest_uid": "g", "data": '{"type": "link", "title": "\\ud83d\\ude00"}'}
    response = await client.post("/watch/event", data=fields)
    assert response.status_code == 200, response.text
    await readable(client, response.json()["profile"]["id"])


# --- nesting: one limit for every dialect ---------------------------------------------------


TRACKTOR_DEEP_DATA_IS_422_PATH = ["/set", "/track"]

TRACKTOR_DEEP_DATA_IS_422_LEVELS = [MAX_DEPTH + 1, 200, 255, 500, 1000]


async def test_tracktor_deep_data_is_422(client, uow) -> None:
    for path in TRACKTOR_DEEP_DATA_IS_422_PATH:
        for levels in TRACKTOR_DEEP_DATA_IS_422_LEVELS:
            before = await row_counts(uow)
            fields = {"id": "u", "action": "a", "data": deep_json(levels)}
            await refused(await client.post(path, data={"sid": TRACKTOR, **fields}), uow, before, None)
            detail = await refused(await client.get(f"{path}?{tracktor_query(**fields)}"), uow, before, None)
            assert detail[0]["loc"][:2] == ["query", "data"]


TRACKTOR_DEEP_TRAITS_ARE_REFUSED_ON_THE_WAY_IN_CASES = [252, 253, 254]


async def test_tracktor_deep_traits_are_refused_on_the_way_in(client, uow) -> None:
    for levels in TRACKTOR_DEEP_TRAITS_ARE_REFUSED_ON_THE_WAY_IN_CASES:
        before = await row_counts(uow)
        query = tracktor_query(id="u", data=json.dumps({"t": nested(levels - 1)}))
        await refused(await client.get(f"/set?{query}"), uow, before, None)


async def test_the_depth_limit_is_the_same_for_every_dialect(client, uow) -> None:
    """``MAX_DEPTH`` levels pass in each dialect's free-form value and are read back; one more is a 422."""
    key = {"X-API-Key": SECRET}
    for levels, ok in ((MAX_DEPTH, True), (MAX_DEPTH + 1, False)):
        value = nested(levels - 1)  # inside the top-level object that is the checked value
        before = await row_counts(uow)
        responses = [
            await post_json(client, "/track", tracardi_payload(properties={"v": value})),
            await client.get(f"/set?{tracktor_query(id='deep', data=json.dumps({'v': value}))}"),
            await client.post(
                "/watch/event",
                data={"app_key": INSEND, "guest_uid": "g", "data": insend_data(properties={"v": value})},
            ),
            await post_json(client, "/tracify/events", {"events": [tracify_event(v=value)]}, **key),
        ]
        for response in responses:
            if ok:
                assert response.status_code == 200, response.text
                body = response.json()
                await readable(
                    client, body["events"][0]["profile_id"] if "accepted" in body else body["profile"]["id"]
                )
            else:
                await refused(response, uow, before, None)
                assert "Nested deeper than" in response.json()["detail"][0]["msg"]
