"""Property-based: arbitrary values in every field each dialect reads, on SQLite and PostgreSQL.

Every answer is a 2xx, or a 4xx with a JSON body that wrote nothing (every table's row count
unchanged); a 2xx's profile can be read back through the API. Values are drawn with NUL, lone
surrogates, integers of any size, NaN and Infinity (and ``1e400`` written as such), nesting up
to 1,000 levels, odd types where objects or strings belong, and bytes that are not UTF-8.

CI runs ``EXAMPLES`` examples per dialect per database; ``TRACKWAY_HYPOTHESIS_EXAMPLES=2000``
hunts longer.

Hypothesis runs every example inside one test call, so the function-scoped ``client`` and
``uow`` (one app, one database) are shared by the examples of a test: that is deliberate, and
the health check that warns about it is suppressed. No example relies on a clean database:
each compares the row counts just before and just after its own request, and the requests of
one test run one after another.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.hostile.conftest import (
    INSEND,
    SECRET,
    SEGMENT,
    TRACARDI,
    TRACIFY,
    TRACKTOR,
    readable,
    row_counts,
    sha,
)
from trackway.db.uow import SqlUnitOfWork

EXAMPLES = int(os.environ.get("TRACKWAY_HYPOTHESIS_EXAMPLES", "30"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
pytestmark = pytest.mark.usefixtures("sources")

# --- JSON values -------------------------------------------------------------------------------

#: JSON tokens ``json.dumps`` cannot write from a Python value: drawn as a marker string, then swapped in.
RAW_TOKENS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1.7976931348623157e308",
    "5e-324",
    "-0",
    "1E2",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1" * 400,
)
DEEP_LEVELS = (31, 32, 33, 64, 200, 252, 253, 254, 255, 256, 500, 1000)
SPECIAL_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ud83d\ude00",
    "😀",
    "Jürgen",
    "\ufeff",
    "\n",
    "http://[x/",
    "https://shop.example/?utm_source=%00&utm_medium=m",
    "https://shop.example/?utm_source=a%FFb",
    "x" * 300,
)


def rarely(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    """``good`` most of the time, ``bad`` one time in ``one_in``: a request with one hostile part
    gets past the other checks to the one that part must meet."""
    return st.integers(0, one_in - 1).flatmap(lambda n: bad if n == one_in - 1 else good)


plain_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
hostile_text = st.one_of(
    st.sampled_from(SPECIAL_TEXT),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12).map(lambda t: t + "\x00"),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates and NUL included
)
text = rarely(plain_text, hostile_text, 6)
raw_token = st.sampled_from(RAW_TOKENS).map(lambda token: f"@@{token}@@")
deep = st.sampled_from(DEEP_LEVELS).map(lambda levels: f"@@DEEP{levels}@@")
plain_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    plain_text,
)
hostile_leaves = st.one_of(
    st.integers(),  # any size: hypothesis draws far beyond 64 bits
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30]),
    st.floats(),  # NaN and infinities included: json.dumps writes NaN / Infinity
    hostile_text,
    raw_token,
    deep,
)
json_values = st.recursive(
    rarely(plain_leaves, hostile_leaves, 5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(text, json_values, max_size=4)


def odd(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field as it should be, or now and then any JSON value in its place."""
    return rarely(strategy, json_values, 12)


def to_json(value: Any) -> str:
    """JSON text, lone surrogates as ``\\ud800`` escapes, markers swapped for their raw tokens."""
    out = json.dumps(value)  # ensure_ascii: a lone surrogate is written as an escape
    if "@@" not in out:
        return out
    for token in RAW_TOKENS:
        out = out.replace(f'"@@{token}@@"', token)
    for levels in DEEP_LEVELS:
        out = out.replace(f'"@@DEEP{levels}@@"', '{"k":' * levels + "1" + "}" * levels)
    return out


def utf8(value: str) -> bytes:
    """Lone surrogates pass as the bytes they would be, which is not UTF-8: the server must refuse them."""
    return value.encode("utf-8", "surrogatepass")


def form(fields: list[tuple[str, str | bytes]]) -> bytes:
    pairs = []
    for key, value in fields:
        raw = value if isinstance(value, bytes) else utf8(value)
        pairs.append(f"{quote_from_bytes(utf8(key), safe='')}={quote_from_bytes(raw, safe='')}")
    return "&".join(pairs).encode()


offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
recent = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2030, 1, 1))
iso_times = rarely(
    st.tuples(recent, st.one_of(st.none(), st.just(UTC), offsets.map(timezone))).map(
        lambda t: t[0].replace(tzinfo=t[1]).isoformat()
    ),
    st.one_of(
        st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), offsets.map(timezone))).map(
            lambda d: d.isoformat()
        ),
        st.sampled_from(
            [
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "0999-01-01T00:00:00Z",
                "1969-12-31T23:59:59Z",
                "1970-01-01T00:00:00Z",
                "2024-06-21T12:36:37.123456789Z",
            ]
        ),
        st.integers(),
    ),
    4,
)
hashes = st.sampled_from([sha("198.51.100.4"), sha("Mozilla/5.0"), sha("a@b.example"), sha("v")])

# --- the exchange ------------------------------------------------------------------------------


def _profiles(body: Any) -> list[str]:
    if isinstance(body, dict) and isinstance(body.get("profile"), dict):
        return [body["profile"]["id"]]
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return [e["profile_id"] for e in body["events"] if isinstance(e, dict) and "profile_id" in e]
    return []


async def exchange(client: httpx.AsyncClient, uow: SqlUnitOfWork, request: httpx.Request) -> httpx.Response:
    """Send ``request``; check the answer is no 5xx, a JSON 4xx wrote nothing, a 2xx's profiles read back."""
    before = await row_counts(uow)
    response = await client.send(request)
    status = response.status_code
    event(f"status {status}")  # the spread of answers: pytest --hypothesis-show-statistics
    assert status < 500, (status, request.url, request.content[:300], response.text[:300])
    kind = response.headers.get("content-type", "")
    if status >= 400:
        assert kind.startswith("application/json"), (status, kind)
        assert "detail" in response.json()
        assert await row_counts(uow) == before, (status, response.text[:300])
        return response
    assert 200 <= status < 300, status
    if kind.startswith("image/gif"):  # a Tracktor pixel: nothing to read back from it
        return response
    assert kind.startswith("application/json"), kind
    for profile_id in _profiles(response.json()):
        await readable(client, profile_id)
    return response


# --- Tracardi -----------------------------------------------------------------------------------

page_urls = rarely(
    st.sampled_from(["https://shop.example/p?utm_source=n&utm_medium=e", "https://shop.example/"]),
    st.one_of(text, st.just("http://[x/")),
    3,
)
contexts = odd(
    st.one_of(
        objects,
        st.fixed_dictionaries(
            {"page": odd(st.fixed_dictionaries({"url": odd(page_urls)}, optional={"referrer": json_values}))},
            optional={"utm": odd(objects)},
        ),
    )
)
#: Ids and types: 1-128 characters in the wire models, so mostly drawn within that.
keys = rarely(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=20),
    text,
    6,
)
refs = odd(st.fixed_dictionaries({"id": odd(keys)}))
tracardi_events = st.fixed_dictionaries(
    {"type": odd(st.one_of(st.just("page-view"), keys))},
    optional={
        "id": odd(keys),
        "properties": odd(objects),
        "context": contexts,
        "options": odd(st.one_of(objects, st.fixed_dictionaries({"saveEvent": json_values}))),
        "time": odd(iso_times),
        "tags": odd(st.lists(text, max_size=3)),
    },
)
tracardi_payloads = st.fixed_dictionaries(
    {
        "source": rarely(st.just({"id": TRACARDI}), refs, 8),
        "events": odd(st.lists(tracardi_events, max_size=3)),
    },
    optional={
        "session": refs,
        "profile": refs,
        "context": contexts,
        "properties": odd(objects),
        "options": odd(objects),
        # Trackway's extension: tracker.identify(userId, traits).
        "identify": odd(
            st.fixed_dictionaries(
                {"userId": odd(keys)},
                optional={
                    "traits": odd(
                        st.one_of(
                            objects,
                            st.fixed_dictionaries(
                                {"email": odd(st.sampled_from(["u@example.com", "x", None]))}
                            ),
                        )
                    )
                },
            )
        ),
    },
)


@SETTINGS
@given(payload=odd(tracardi_payloads), content_type=st.sampled_from(["application/json", "text/plain", None]))
async def test_tracardi(client, uow, payload: Any, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    request = client.build_request("POST", "/track", content=utf8(to_json(payload)), headers=headers)
    await exchange(client, uow, request)


# --- Tracktor -----------------------------------------------------------------------------------

field_values = st.one_of(
    text,
    st.integers().map(str),
    json_values.map(to_json),
    st.binary(max_size=8),  # percent-encoded as they are: often not UTF-8
)


def field(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A form or query field: as it should be, or now and then any value at all."""
    return rarely(good, field_values, 6)


person_ids = st.one_of(st.sampled_from(["u-1", "a-anon", "u-2"]), plain_text)
tracktor_data = st.one_of(
    odd(objects).map(to_json),
    st.fixed_dictionaries(
        {},
        optional={
            "email": odd(st.sampled_from(["u@example.com", "x"])),
            "first_name": odd(plain_text),
            "profile_image": odd(st.sampled_from(["https://x.example/a.png", "http://[x/"])),
            "plan": json_values,
        },
    ).map(to_json),
)
#: Every field each call reads; the ones it requires are almost always sent.
TRACKTOR_FIELDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "/set": ({"id": person_ids, "data": tracktor_data}, {}),
    "/track": (
        {"id": person_ids, "action": st.one_of(st.just("viewed"), plain_text)},
        {"data": tracktor_data},
    ),
    "/alias": ({"srcid": st.sampled_from(["a-anon", "u-1"]), "destid": st.sampled_from(["u-1", "u-2"])}, {}),
}
TRACKTOR_OPTIONAL = {
    "ts": st.integers(min_value=-(10**12), max_value=2 * 10**9).map(str),
    "pixel": st.sampled_from(["1", "0", "true", ""]),
}
TRACKTOR_SIGNS = ("sign", "destsign", "srcsign")


def tracktor_fields(path: str) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = TRACKTOR_FIELDS[path]
    return st.fixed_dictionaries(
        {"sid": field(st.just(TRACKTOR)), **{name: field(value) for name, value in required.items()}},
        optional={
            **{name: field(value) for name, value in {**optional, **TRACKTOR_OPTIONAL}.items()},
        },
    )


tracktor_calls = st.sampled_from(sorted(TRACKTOR_FIELDS)).flatmap(
    lambda path: st.tuples(st.just(path), tracktor_fields(path))
)


@SETTINGS
@given(
    call=tracktor_calls,
    # The source has no secret: a sign is a 403, so one is sent now and then only.
    signs=rarely(
        st.just([]), st.lists(st.tuples(st.sampled_from(TRACKTOR_SIGNS), field_values), max_size=2), 8
    ),
    extra=rarely(st.just([]), st.lists(st.tuples(text, field_values), max_size=2), 4),
    method=st.sampled_from(["GET", "POST"]),
    accept=st.sampled_from([None, "image/*", "application/json", "image/gif, application/json"]),
)
async def test_tracktor(
    client, uow, call: tuple[str, dict[str, Any]], signs, extra, method: str, accept
) -> None:
    path, fields = call
    encoded = form([*fields.items(), *signs, *extra])
    headers = {"Accept": accept} if accept else {}
    if method == "GET":
        request = client.build_request("GET", path + "?" + encoded.decode(), headers=headers)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = client.build_request("POST", path, content=encoded, headers=headers)
    await exchange(client, uow, request)


# --- InSend -------------------------------------------------------------------------------------

lines = st.fixed_dictionaries(
    {
        "product_id": odd(st.sampled_from(["sku-1", "sku-2"])),
        "qnt": odd(st.sampled_from([1, "2", 0.5])),
        "price": odd(st.sampled_from([9.99, "125.03", 0])),
    },
    optional={"name": json_values},
)
product = {"product_id": st.sampled_from(["sku-1", 42]), "qnt": st.sampled_from([1, 2.5, "3"])}
#: Seed 003's event types and the properties each requires (``insend.py``'s models).
INSEND_REQUIRED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "add_to_cart": {**product, "price": st.sampled_from([1, "9.99"])},
    "remove_from_cart": product,
    "update_cart": {"items": st.lists(odd(lines), max_size=2)},
    "purchase": {"order_id": st.sampled_from(["o-1", 7]), "revenue": st.sampled_from(["19.90", 5])},
    "view_product": {"product_id": st.just("sku-1")},
    "link": {},
    "file": {"file_url": st.just("https://x/f.pdf")},
    "mailto": {"email": st.just("shop@example.com")},
    "custom": {"key": st.just("signup")},
    "update_info": {},
}


def insend_data(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    properties = st.fixed_dictionaries(
        {k: odd(v) for k, v in INSEND_REQUIRED[type_].items()},
        optional={
            **({} if "price" in INSEND_REQUIRED[type_] else {"price": odd(st.sampled_from([1, "9.99"]))}),
            "extra": json_values,
        },
    )
    return st.fixed_dictionaries(
        {"type": odd(st.just(type_))},
        optional={
            "properties": odd(properties) if INSEND_REQUIRED[type_] else odd(properties | st.just([])),
            "visitor_info": odd(
                st.fixed_dictionaries(
                    {}, optional={"email": odd(st.just("v@example.com")), "first_name": json_values}
                )
            ),
            "url": odd(page_urls),
            "domain": odd(text),
            "host": odd(text),
            "path": odd(text),
            "title": odd(text),
            "referrer": odd(text),
            "attributes": json_values,
            "more": json_values,
        },
    )


insend_payloads = st.sampled_from(sorted(INSEND_REQUIRED)).flatmap(insend_data)


def unescaped(out: str) -> str:
    """JSON text with its characters written as themselves, as a client may send ``data``: a lone
    surrogate then travels as bytes that are not UTF-8."""
    try:
        return json.dumps(json.loads(out, parse_constant=lambda c: c), ensure_ascii=False)
    except (ValueError, RecursionError):
        return out


@SETTINGS
@given(
    data=field(
        st.one_of(odd(insend_payloads).map(to_json), odd(insend_payloads).map(to_json).map(unescaped))
    ),
    app_key=field(st.just(INSEND)),
    visitor=st.one_of(st.none(), field(st.just("v-1"))),
    guest=st.one_of(st.just("g-1"), field(st.just("g-2"))),
    in_query=st.booleans(),
)
async def test_insend(client, uow, data: str | bytes, app_key, visitor, guest, in_query: bool) -> None:
    fields = [("app_key", app_key), ("data", data)]
    fields += [
        (name, value) for name, value in (("visitor_uid", visitor), ("guest_uid", guest)) if value is not None
    ]
    encoded = form(fields)
    if in_query:
        request = client.build_request("POST", "/watch/event?" + encoded.decode())
    else:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        request = client.build_request("POST", "/watch/event", content=encoded, headers=headers)
    await exchange(client, uow, request)


# --- Tracify ------------------------------------------------------------------------------------

TRACIFY_REQUIRED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "pageview": {},
    "productview": {},
    "addtocart": {},
    "purchase": {
        "order_id": st.one_of(st.sampled_from(["A-1", "A-2", 17]), plain_text),
        "currency": st.sampled_from(["EUR", "eur", "USD"]),
        "amount": st.sampled_from(["19.90", 5, "0"]),
    },
    "conversion": {
        "conversion_id": st.sampled_from(["c-1", "c-2"]),
        "currency": st.just("EUR"),
        "amount": st.just("1.00"),
    },
}
TRACIFY_OPTIONAL = {
    "ITEM1": st.just("Tea"),
    "utm_source": json_values,
    "trc_id": json_values,
    "Referer": json_values,
    "free": json_values,
}
#: Item amounts and quantities, sent now and then: without their ``ITEMn``, a 422.
tracify_item_parts = rarely(
    st.just({}),
    st.fixed_dictionaries({}, optional={"AMT1": st.sampled_from(["4.50", 4.5]), "QTY2": json_values}),
    4,
)


def tracify_data(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = st.fixed_dictionaries(
        {
            "origin": odd(st.just("https://shop.example")),
            **{k: odd(v) for k, v in TRACIFY_REQUIRED[type_].items()},
        },
        optional={k: odd(v) for k, v in TRACIFY_OPTIONAL.items()},
    )
    return st.tuples(fields, tracify_item_parts).map(lambda parts: {**parts[0], **parts[1]})


tracify_events = st.sampled_from(sorted(TRACIFY_REQUIRED)).flatmap(
    lambda type_: st.fixed_dictionaries(
        {
            "url": odd(st.one_of(page_urls, st.just("https://shop.example/p?utm_source=a&trc_x=%00"))),
            "customer_site_id": rarely(st.just(TRACIFY), json_values, 10),
            "identity_data": rarely(
                st.just({sha("198.51.100.4"): 3, sha("Mozilla/5.0"): 4}),
                st.dictionaries(st.one_of(hashes, text), odd(st.sampled_from([1, 2, 3, 4])), max_size=4),
                5,
            ),
            "datetime": rarely(
                recent.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
                st.one_of(
                    st.sampled_from(["0001-01-01 00:00:00", "9999-12-31 23:59:59", "1969-12-31 23:59:59"]),
                    json_values,
                ),
                6,
            ),
            "type": odd(st.just(type_)),
            "data": odd(tracify_data(type_)),
        }
    )
)


@SETTINGS
@given(
    body=odd(st.fixed_dictionaries({"events": odd(st.lists(odd(tracify_events), min_size=1, max_size=3))})),
    key=rarely(
        st.just(SECRET), st.one_of(st.none(), text.filter(lambda k: k.isascii() and k.isprintable())), 6
    ),
)
async def test_tracify(client, uow, body: Any, key: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    request = client.build_request("POST", "/tracify/events", content=utf8(to_json(body)), headers=headers)
    await exchange(client, uow, request)


# --- Segment ------------------------------------------------------------------------------------

segment_ids = rarely(st.sampled_from(["u-1", "anon-1", "u-2", 42]), st.one_of(text, json_values), 6)
segment_calls = st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]).flatmap(
    lambda type_: st.fixed_dictionaries(
        {"type": odd(st.just(type_))},
        optional={
            "userId": segment_ids,
            "anonymousId": segment_ids,
            "previousId": segment_ids,
            "groupId": segment_ids,
            "messageId": odd(st.one_of(st.sampled_from(["m-1", "m-2", "m-3"]), keys)),
            "event": odd(st.one_of(st.just("Order Completed"), keys)),
            "name": odd(plain_text),
            "category": odd(plain_text),
            "properties": odd(objects),
            "traits": odd(
                st.one_of(
                    objects,
                    st.fixed_dictionaries(
                        {"email": odd(st.sampled_from(["u@example.com", "x", None, " A@Example.com "]))}
                    ),
                )
            ),
            "context": contexts,
            "integrations": odd(objects),
            "timestamp": odd(iso_times),
            "originalTimestamp": odd(iso_times),
            "sentAt": odd(iso_times),
        },
    )
)
segment_paths = st.sampled_from(
    ["/v1/batch", "/b", "/v1/track", "/t", "/v1/identify", "/i", "/v1/alias", "/g"]
)


@SETTINGS
@given(
    path=segment_paths,
    calls=odd(st.lists(odd(segment_calls), min_size=1, max_size=3)),
    envelope=st.fixed_dictionaries(
        {}, optional={"sentAt": odd(iso_times), "context": contexts, "integrations": odd(objects)}
    ),
    key=rarely(st.just(SEGMENT), st.one_of(st.none(), json_values), 6),
    basic=st.booleans(),
    gzipped=st.booleans(),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
)
async def test_segment(
    client,
    uow,
    path: str,
    calls: Any,
    envelope: dict[str, Any],
    key: Any,
    basic: bool,
    gzipped: bool,
    content_type: str | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if path in ("/v1/batch", "/b"):
        body: Any = {"batch": calls, **envelope}
    else:
        body = calls[0] if isinstance(calls, list) and calls else calls
    if basic and isinstance(key, str) and key.isascii():
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    elif isinstance(body, dict):
        body = {**body, "writeKey": key}
    content = utf8(to_json(body))
    if gzipped:
        content = gzip.compress(content)
        headers["Content-Encoding"] = "gzip"
    await exchange(client, uow, client.build_request("POST", path, content=content, headers=headers))
