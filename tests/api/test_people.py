"""``/api/people`` and the condition language, ``/api/events``, a profile's sessions: on both databases.

Histories are built through the ingest core (``ingest``) with chosen traits, event times and
receive times, so that each operator's type rule, each event-leaf option and each sort order
has a known answer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ADMIN
from tests.helpers import tracker_payload
from trackway.core import identity as identity_keys
from trackway.core.batch import EventIn, IdentityRef, IngestBatch, RequestMeta, SourceRef, TraitsPatch
from trackway.core.ingest import ingest
from trackway.core.merge import merge_profiles

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
NOW = datetime.now(UTC)


async def person(
    uow: Any,
    key: str,
    *,
    traits: dict[str, Any] | None = None,
    events: tuple[tuple[str, dict[str, Any], datetime], ...] = (),
    at: datetime | None = None,
    session: str | None = None,
    email: str | None = None,
) -> str:
    """A person named ``person:key`` in the source, with traits and events; their profile id."""
    idents = [IdentityRef("person", key, scope=SOURCE)]
    if email is not None:
        idents.append(IdentityRef("email_sha256", identity_keys.email_sha256(email)))
    batch = IngestBatch(
        source=SourceRef(SOURCE, "tracardi"),
        meta=RequestMeta(received_at=at or datetime.now(UTC)),
        identities=idents,
        traits=TraitsPatch(set=traits or {}),
        events=[
            EventIn(kind, properties=props, time=time, dedup_key=str(uuid.uuid4()))
            for kind, props, time in events
        ],
        session_key=session,
    )
    return (await ingest(batch, uow)).profile_id


async def people(client, where: Any = None, **params: Any) -> list[str]:
    """Ids of every person matching (all pages)."""
    query = dict(params)
    if where is not None:
        query["where"] = json.dumps(where)
    found: list[str] = []
    cursor = None
    for _ in range(50):
        response = await client.get(
            "/api/people", headers=ADMIN, params={**query, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("no last page")


@pytest.fixture
async def cast(uow, tracardi_source) -> dict[str, str]:
    """Four people whose traits differ in type: key -> profile id."""
    return {
        "ann": await person(
            uow, "ann", traits={"age": 30, "city": "Oslo", "name": "Ann", "vip": True, "score": 2.5}
        ),
        "bob": await person(uow, "bob", traits={"age": "40", "city": "Bergen", "name": "Bob", "vip": False}),
        "cid": await person(
            uow,
            "cid",
            traits={"age": 25, "name": "Cid", "tags": "a,b", "address": {"city": "Oslo"}, "pct": "50%"},
        ),
        "dan": await person(uow, "dan"),
    }


def leaf(prop: str, op: str, value: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {"property": prop, "op": op}
    if op not in ("exists", "not_exists"):
        node["value"] = value
    return node


PROPERTY_CASES = [
    # Numbers compare as numbers, strings as strings; a value of another type never matches.
    (leaf("age", "gte", 25), {"ann", "cid"}),
    (leaf("age", "gt", 25), {"ann"}),
    (leaf("age", "lt", 30), {"cid"}),
    (leaf("age", "lte", 30), {"ann", "cid"}),
    (leaf("age", "eq", 30), {"ann"}),
    (leaf("age", "eq", 30.0), {"ann"}),
    (leaf("age", "eq", "40"), {"bob"}),
    (leaf("age", "eq", 40), set()),
    (leaf("age", "gt", "3"), {"bob"}),  # "40" > "3" as strings; 30 and 25 are numbers
    (leaf("age", "ne", 30), {"bob", "cid", "dan"}),  # ne is not eq: without the trait too
    (leaf("score", "gt", 2), {"ann"}),
    (leaf("score", "lt", 2.6), {"ann"}),
    (leaf("name", "contains", "o"), {"bob"}),
    (leaf("name", "starts_with", "C"), {"cid"}),
    (leaf("name", "starts_with", "_"), set()),  # no LIKE: no wildcard
    (leaf("pct", "contains", "0%"), {"cid"}),
    (leaf("name", "contains", "%"), set()),
    (leaf("city", "gte", "O"), {"ann"}),
    (leaf("city", "in", ["Oslo", "Bergen"]), {"ann", "bob"}),
    (leaf("age", "in", [30, "40"]), {"ann", "bob"}),
    (leaf("vip", "eq", True), {"ann"}),
    (leaf("vip", "eq", False), {"bob"}),
    (leaf("vip", "eq", "true"), set()),
    (leaf("address.city", "eq", "Oslo"), {"cid"}),
    (leaf("tags", "exists"), {"cid"}),
    (leaf("age", "not_exists"), {"dan"}),
    (leaf("address", "exists"), {"cid"}),
]


@pytest.mark.parametrize(
    ("condition", "expected"), PROPERTY_CASES, ids=[json.dumps(c) for c, _ in PROPERTY_CASES]
)
async def test_property_leaf(client, cast, condition, expected) -> None:
    names = {v: k for k, v in cast.items()}
    assert {names[i] for i in await people(client, condition)} == expected


async def test_all_any_not(client, cast) -> None:
    names = {v: k for k, v in cast.items()}

    async def keys(where: Any) -> set[str]:
        return {names[i] for i in await people(client, where)}

    assert await keys({"all": [leaf("age", "gte", 25), {"not": leaf("city", "eq", "Oslo")}]}) == {"cid"}
    assert await keys({"any": [leaf("city", "eq", "Bergen"), leaf("name", "eq", "Cid")]}) == {"bob", "cid"}
    assert await keys({"not": {"any": [leaf("city", "eq", "Bergen"), leaf("name", "eq", "Cid")]}}) == {
        "ann",
        "dan",
    }
    assert await keys({"all": []}) == {"ann", "bob", "cid", "dan"}
    assert await keys({"any": []}) == set()
    assert await keys({"not": leaf("age", "gt", "0")}) == {"ann", "cid", "dan"}


async def test_post_search_is_the_same_query(client, cast) -> None:
    body = {"where": leaf("age", "gte", 25), "sort": "created_at", "order": "asc", "size": True}
    answer = (await client.post("/api/people/search", headers=ADMIN, json=body)).json()
    assert [item["id"] for item in answer["items"]] == [cast["ann"], cast["cid"]]
    assert answer["size"] == 2
    item = answer["items"][0]
    assert set(item) == {"id", "traits", "anonymous", "visits", "created_at", "last_seen_at", "identities"}
    assert item["identities"] == [{"kind": "person", "value": "ann", "scope": SOURCE}]


@pytest.fixture
async def shoppers(uow, tracardi_source) -> dict[str, str]:
    recent, old = NOW - timedelta(days=10), NOW - timedelta(days=90)
    return {
        "ann": await person(
            uow,
            "ann",
            events=(("purchase", {"sku": "X", "price": 10}, recent), ("purchase", {"sku": "Y"}, recent)),
        ),
        "bob": await person(uow, "bob", events=(("purchase", {"sku": "X", "price": 99}, old),)),
        "cid": await person(uow, "cid", events=(("page-view", {"sku": "X"}, recent),)),
        "dan": await person(uow, "dan", events=tuple(("purchase", {"sku": "Z"}, recent) for _ in range(3))),
    }


EVENT_CASES = [
    ({"event": "purchase"}, {"ann", "bob", "dan"}),
    ({"event": "purchase", "performed": True, "within_days": 60}, {"ann", "dan"}),
    ({"event": "purchase", "within_days": 60, "where": [leaf("sku", "eq", "X")]}, {"ann"}),
    ({"event": "purchase", "where": [leaf("sku", "eq", "X")]}, {"ann", "bob"}),
    ({"event": "purchase", "where": [leaf("price", "gt", 50)]}, {"bob"}),
    ({"event": "purchase", "min_count": 2}, {"ann", "dan"}),
    ({"event": "purchase", "min_count": 3}, {"dan"}),
    ({"event": "purchase", "min_count": 2, "where": [leaf("sku", "eq", "X")]}, set()),
    ({"event": "purchase", "performed": False}, {"cid"}),
    ({"event": "purchase", "performed": False, "within_days": 60}, {"bob", "cid"}),
    ({"event": "purchase", "performed": False, "min_count": 3}, {"ann", "bob", "cid"}),
    ({"event": "refund"}, set()),
    ({"all": [{"event": "page-view"}, {"not": {"event": "purchase"}}]}, {"cid"}),
]


@pytest.mark.parametrize(("condition", "expected"), EVENT_CASES, ids=[json.dumps(c) for c, _ in EVENT_CASES])
async def test_event_leaf(client, shoppers, condition, expected) -> None:
    names = {v: k for k, v in shoppers.items()}
    assert {names[i] for i in await people(client, condition)} == expected


async def test_a_merged_person_is_counted_once(client, uow, shoppers) -> None:
    async with uow.transaction() as db:
        survivor = await merge_profiles(
            db, from_id=shoppers["bob"], into_id=shoppers["ann"], reason="test", source_id=SOURCE, now=NOW
        )
    assert survivor == shoppers["ann"]
    bought_x = {"event": "purchase", "where": [leaf("sku", "eq", "X")]}
    assert await people(client, bought_x) == [shoppers["ann"]]
    # ann's two purchases and bob's one are all ann's now.
    assert set(await people(client, {"event": "purchase", "min_count": 3})) == {
        shoppers["ann"],
        shoppers["dan"],
    }
    everyone = await people(client)
    assert shoppers["bob"] not in everyone and len(everyone) == 3
    # By identity: bob's key now names ann's profile, once.
    assert await people(client, identity="person:bob") == [shoppers["ann"]]
    size = (await client.post("/api/people/search", headers=ADMIN, json={"size": True})).json()["size"]
    assert size == 3


async def test_filters_source_identity_last_seen(client, uow, tracardi_source) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    a = await person(uow, "a", at=t, email="A@Example.com")
    b = await person(uow, "b", at=t + timedelta(days=1))
    other = (
        await client.post(
            "/api/sources", headers=ADMIN, json={"name": "app", "dialect": "tracardi", "id": "other-src"}
        )
    ).json()["id"]
    c = (await client.post("/track", json=tracker_payload(other, session="c"))).json()["profile"]["id"]
    assert set(await people(client)) == {a, b, c}
    assert set(await people(client, source=SOURCE)) == {a, b}
    assert await people(client, source=other) == [c]
    assert await people(client, source="nowhere") == []
    assert await people(client, identity="email: a@example.com") == [a]
    assert await people(client, identity=f"email_sha256:{identity_keys.email_sha256('a@example.com')}") == [a]
    assert await people(client, identity="person:b") == [b]
    assert await people(client, identity="person:" + "x" * 300) == []
    assert await people(client, last_seen_before="2026-01-01T12:00:00Z") == [a]
    assert await people(
        client, last_seen_after="2026-01-01T12:00:00", last_seen_before="2026-06-01T00:00:00Z"
    ) == [b]


async def test_sort_orders_and_stable_pages_with_ties(client, uow, tracardi_source) -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    ids = [await person(uow, f"p{i}", at=t) for i in range(7)]  # seven ties
    later = await person(uow, "late", at=t + timedelta(hours=1), session="s1")
    await person(uow, "late", at=t + timedelta(hours=2), session="s2")  # a second visit
    by_id_desc = sorted(ids, reverse=True)
    for limit in (1, 2, 3, 7, 100):
        assert await people(client, limit=limit) == [later, *by_id_desc]
        assert await people(client, limit=limit, order="asc") == [*sorted(ids), later]
        assert await people(client, limit=limit, sort="created_at") == [later, *by_id_desc]
        assert (await people(client, limit=limit, sort="visits"))[0] == later
        assert await people(client, limit=limit, sort="visits", order="asc") == [*sorted(ids), later]
    # The merged-away never shows, even mid-pagination.
    first = (await client.get("/api/people", headers=ADMIN, params={"limit": 3})).json()
    assert len(first["items"]) == 3 and first["next_cursor"]


@pytest.mark.parametrize(
    ("where", "loc"),
    [
        ({"property": "age", "op": "bigger", "value": 1}, ["query", "where", "op"]),
        (
            {"all": [leaf("age", "eq", 1), {"property": "a", "op": "eq", "value": 1, "x": 1}]},
            ["query", "where", "all", 1, "x"],
        ),
        ({"any": [{"colour": "red"}]}, ["query", "where", "any", 0]),
        (
            {"event": "buy", "where": [{"property": "a", "op": "near", "value": 1}]},
            ["query", "where", "where", 0, "op"],
        ),
        ({"event": "buy", "min_count": 0}, ["query", "where", "min_count"]),
        ({"event": "buy", "within_days": "2"}, ["query", "where", "within_days"]),
        ({"property": "a", "op": "in", "value": []}, ["query", "where", "value"]),
        ({"property": "a", "op": "gt", "value": True}, ["query", "where", "value"]),
        ({"property": "a", "op": "contains", "value": 1}, ["query", "where", "value"]),
        ({"property": "a", "op": "eq", "value": {"x": 1}}, ["query", "where", "value"]),
        ({"property": "a", "op": "eq", "value": "x" * 1001}, ["query", "where", "value"]),
        ({"property": "a..b", "op": "exists"}, ["query", "where", "property"]),
        ({"property": 'a"b', "op": "exists"}, ["query", "where", "property"]),
        ({"property": "a\u0000", "op": "exists"}, ["query", "where", "property"]),
        ([1, 2], ["query", "where"]),
    ],
)
async def test_bad_conditions_are_422_naming_the_field(client, where, loc) -> None:
    response = await client.get("/api/people", headers=ADMIN, params={"where": json.dumps(where)})
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    body = await client.post("/api/people/search", headers=ADMIN, json={"where": where})
    assert body.status_code == 422
    if isinstance(where, dict):
        assert ["body", "where", *loc[2:]] in [e["loc"] for e in body.json()["detail"]]


async def test_numbers_beyond_64_bits_are_422(client) -> None:
    where = {"property": "a", "op": "eq", "value": 2**70}
    response = await client.post("/api/people/search", headers=ADMIN, json={"where": where})
    assert response.status_code == 422
    assert ["body", "where", "value"] in [e["loc"] for e in response.json()["detail"]]


async def test_a_tree_deeper_than_ten_levels_is_422(client, cast) -> None:
    tree: dict[str, Any] = leaf("age", "exists")
    for _ in range(9):
        tree = {"not": tree}
    assert len(await people(client, tree)) in (1, 3)  # ten levels: fine
    deeper = {"all": [tree]}
    response = await client.get("/api/people", headers=ADMIN, params={"where": json.dumps(deeper)})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][:4] == ["query", "where", "all", 0] and "10 levels" in error["msg"]
    very = '{"where": ' + '{"not": ' * 5000 + json.dumps(leaf("age", "exists")) + "}" * 5001
    headers = {**ADMIN, "Content-Type": "application/json"}
    response = await client.post("/api/people/search", headers=headers, content=very)
    very_query = '{"not": ' * 1500 + json.dumps(leaf("age", "exists")) + "}" * 1500
    assert (await client.get("/api/people", headers=ADMIN, params={"where": very_query})).status_code == 422
    assert response.status_code in (400, 422)


async def test_bad_query_values_are_422(client, cast) -> None:
    first = (await client.get("/api/people", headers=ADMIN, params={"limit": 1})).json()
    for params, loc in (
        ({"where": "{not json"}, "where"),
        ({"sort": "age"}, "sort"),
        ({"order": "up"}, "order"),
        ({"limit": 0}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": first["next_cursor"], "sort": "visits"}, "cursor"),  # another order's cursor
        ({"cursor": first["next_cursor"], "order": "asc"}, "cursor"),
        ({"last_seen_after": "yesterday"}, "last_seen_after"),
        ({"identity": "nocolon"}, "identity"),
        ({"source": "a\u0000"}, "source"),
        ({"sortt": "visits"}, "sortt"),
    ):
        response = await client.get("/api/people", headers=ADMIN, params=params)
        assert response.status_code == 422, params
        assert ["query", loc] in [e["loc"] for e in response.json()["detail"]], params
    response = await client.post("/api/people/search", headers=ADMIN, json={"colour": "red"})
    assert response.status_code == 422
    assert ["body", "colour"] in [e["loc"] for e in response.json()["detail"]]
    assert (await client.get("/api/people")).status_code == 401


async def test_events_across_profiles(client, uow, tracardi_source) -> None:
    t = datetime(2026, 5, 1, tzinfo=UTC)
    a = await person(
        uow,
        "a",
        events=tuple(("view" if i % 2 else "buy", {"n": i}, t + timedelta(minutes=i)) for i in range(6)),
    )
    b = await person(uow, "b", events=(("buy", {"n": 10}, t + timedelta(minutes=3)),))

    async def all_events(**params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
            response = await client.get("/api/events", headers=ADMIN, params=query)
            assert response.status_code == 200, response.text
            out.extend(response.json()["items"])
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return out

    newest_first = await all_events()
    assert len(newest_first) == 7
    times = [e["time"] for e in newest_first]
    assert times == sorted(times, reverse=True)
    assert [e["time"] for e in await all_events(order="asc")] == sorted(times)
    assert {e["properties"]["n"] for e in await all_events(type="buy")} == {0, 2, 4, 10}
    assert {e["profile_id"] for e in await all_events(profile=b)} == {b}
    assert [e["properties"]["n"] for e in await all_events(profile=a, order="asc")] == [0, 1, 2, 3, 4, 5]
    window = await all_events(**{"from": "2026-05-01T00:02:00Z", "to": "2026-05-01T00:04:00Z"})
    assert sorted(e["properties"]["n"] for e in window) == [2, 3, 10]
    assert await all_events(source="other") == []
    assert await all_events(profile="nobody") == []
    # A merged profile's id stands for its survivor.
    async with uow.transaction() as db:
        await merge_profiles(db, from_id=b, into_id=a, reason="test", source_id=SOURCE, now=NOW)
    assert len(await all_events(profile=b)) == 7
    for params in ({"cursor": "xx"}, {"order": "sideways"}, {"from": "soon"}, {"type": ""}):
        response = await client.get("/api/events", headers=ADMIN, params=params)
        assert response.status_code == 422, params


async def test_profile_events_newest_first_and_sessions(client, uow, tracardi_source) -> None:
    t = datetime(2026, 6, 1, tzinfo=UTC)
    pid = ""
    for i in range(5):
        pid = await person(
            uow,
            "walker",
            at=t + timedelta(hours=i),
            session=f"visit-{i}",
            events=(("view", {"n": i}, t + timedelta(hours=i)),),
        )
    desc = (
        await client.get(f"/api/profiles/{pid}/events", headers=ADMIN, params={"order": "desc", "limit": 2})
    ).json()
    assert [e["properties"]["n"] for e in desc["items"]] == [4, 3]
    rest = (
        await client.get(
            f"/api/profiles/{pid}/events",
            headers=ADMIN,
            params={"order": "desc", "cursor": desc["next_cursor"]},
        )
    ).json()
    assert [e["properties"]["n"] for e in rest["items"]] == [2, 1, 0]
    default = (await client.get(f"/api/profiles/{pid}/events", headers=ADMIN)).json()
    assert [e["properties"]["n"] for e in default["items"]] == [0, 1, 2, 3, 4]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/api/profiles/{pid}/sessions", headers=ADMIN, params=params)).json()
        seen.extend(s["started_at"] for s in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    assert (await client.get("/api/profiles/nope/sessions", headers=ADMIN)).status_code == 404
    bad = await client.get(f"/api/profiles/{pid}/sessions", headers=ADMIN, params={"cursor": "!!"})
    assert bad.status_code == 422


async def test_text_no_database_stores_is_422_everywhere(client, cast) -> None:
    """NUL and lone surrogates (raw JSON escapes) are refused before any query, on both databases."""
    headers = {**ADMIN, "Content-Type": "application/json"}
    for body, loc in (
        ('{"where": {"property": "a", "op": "eq", "value": "\\ud800"}}', ["body", "where", "value"]),
        ('{"where": {"property": "a", "op": "in", "value": ["x", "\\u0000"]}}', ["body", "where", "value"]),
        ('{"where": {"event": "\\udfff"}}', ["body", "where", "event"]),
        ('{"where": {"property": "\\ud800", "op": "exists"}}', ["body", "where", "property"]),
        ('{"source": "\\u0000"}', ["body", "source"]),
        ('{"identity": "person:\\ud800"}', ["body", "identity"]),
    ):
        response = await client.post("/api/people/search", headers=headers, content=body)
        assert response.status_code == 422, body
        assert loc in [e["loc"] for e in response.json()["detail"]], (body, response.json())
    for params in (
        {"last_seen_after": "0001-01-01T00:00:00+14:00"},
        {"last_seen_before": "9999-12-31T23:59:59-14:00"},
    ):
        response = await client.get("/api/people", headers=ADMIN, params=params)
        assert response.status_code in (200, 422), params
    response = await client.get("/api/events", headers=ADMIN, params={"from": "0001-01-01T00:00:00+14:00"})
    assert response.status_code in (200, 422)


async def test_values_and_names_are_bound_never_pasted(client, uow, cast) -> None:
    """SQL in a property name, a value or an event type is data: it matches nothing and runs nothing."""
    sneaky = "x'); DROP TABLE profiles; --"
    for where in (
        leaf(sneaky, "exists"),
        leaf("name", "eq", sneaky),
        leaf("name", "contains", "' OR '1'='1"),
        {"event": sneaky, "where": [leaf(sneaky, "eq", sneaky)]},
    ):
        assert await people(client, where) == []
    assert len(await people(client)) == 4
