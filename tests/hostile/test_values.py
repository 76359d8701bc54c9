"""``core/values.py`` on its own: the storable-value rule and ``check_batch`` (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from trackway.core.batch import (
    CartChange,
    CartItem,
    EventIn,
    IdentityRef,
    IngestBatch,
    MergeRequest,
    RequestMeta,
    SourceRef,
    TraitsPatch,
)
from trackway.core.values import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    MAX_STORED_DEPTH,
    check_batch,
    check_event_time,
    check_string,
    check_value,
    value_problem,
)
from trackway.errors import ValidationFailed

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        INT_MIN,
        INT_MAX,
        1.5,
        -0.0,
        "",
        "Jürgen 😀",
        "\ufffd",
        Decimal("125.03"),
        {"a": [1, {"b": None}], "ü": "x"},
        nested(MAX_DEPTH),
    ],
)
def test_storable_values_pass(value: Any) -> None:
    assert value_problem(value, ("body",)) is None


@pytest.mark.parametrize(
    ("value", "path", "type_"),
    [
        ("a\x00b", [], "value_error"),
        ("\ud800", [], "value_error"),
        ("x\udfffy", [], "value_error"),
        ({"a\x00": 1}, ["a\x00"], "value_error"),
        ({"\udc00": 1}, ["\\udc00"], "value_error"),  # escaped: a loc must be writable as JSON
        ({"a": {"b": ["ok", "\x00"]}}, ["a", "b", 1], "value_error"),
        (INT_MAX + 1, [], "int_range"),
        (INT_MIN - 1, [], "int_range"),
        ({"n": 2**64}, ["n"], "int_range"),
        ([10**400], [0], "int_range"),
        (float("nan"), [], "finite_number"),
        ({"x": float("inf")}, ["x"], "finite_number"),
        (float("-inf"), [], "finite_number"),
        (Decimal("NaN"), [], "finite_number"),
        (Decimal("1e400"), [], "finite_number"),
        (nested(MAX_DEPTH + 1), [0, "k"] * (MAX_DEPTH // 2), "too_deep"),
        ({"when": datetime(2024, 1, 1)}, ["when"], "type_error"),
        ({1: "x"}, [1], "value_error"),
    ],
)
def test_unstorable_values_are_named(value: Any, path: list[Any], type_: str) -> None:
    problem = value_problem(value, ("body", "events", 0, "properties"))
    assert problem is not None
    assert problem["loc"] == ["body", "events", 0, "properties", *path]
    assert problem["type"] == type_
    with pytest.raises(ValidationFailed) as raised:
        check_value(value, ("body", "events", 0, "properties"))
    assert raised.value.status_code == 422
    assert raised.value.detail == [problem]


def test_depth_counts_the_checked_value_itself() -> None:
    assert value_problem(nested(MAX_DEPTH), ()) is None
    assert value_problem(nested(MAX_DEPTH + 1), ()) is not None
    assert value_problem(nested(MAX_DEPTH + 1), (), MAX_STORED_DEPTH) is None
    # Far beyond Python's recursion limit: the walk stops at the limit, it never recurses further.
    assert value_problem(nested(5000), ())["type"] == "too_deep"  # type: ignore[index]


def test_check_string() -> None:
    check_string("ok", ("x",), 2)
    for text, type_ in (("a\x00", "value_error"), ("\ud800", "value_error"), ("abc", "string_too_long")):
        with pytest.raises(ValidationFailed) as raised:
            check_string(text, ("query", "id"), 2)
        assert raised.value.detail[0]["loc"] == ["query", "id"]
        assert raised.value.detail[0]["type"] == type_


@pytest.mark.parametrize(
    "value",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1970, 1, 1),  # naive: UTC
        datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        NOW + timedelta(days=1),
        NOW - timedelta(days=20000),
    ],
)
def test_event_times_in_range(value: datetime) -> None:
    assert check_event_time(value, ("t",), NOW).tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # no UTC time at all
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
        datetime(999, 12, 31, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 59, tzinfo=timezone(timedelta(hours=1))),
        NOW + timedelta(days=1, seconds=1),
    ],
)
def test_event_times_out_of_range(value: datetime) -> None:
    with pytest.raises(ValidationFailed) as raised:
        check_event_time(value, ("body", "events", 0, "time"), NOW)
    assert raised.value.detail[0]["loc"] == ["body", "events", 0, "time"]
    assert raised.value.detail[0]["type"] == "datetime_range"


def full_batch() -> IngestBatch:
    person = IdentityRef("person", "42", scope="src")
    return IngestBatch(
        source=SourceRef("src", "insend"),
        meta=RequestMeta(received_at=NOW, user_agent="UA", ip="203.0.113.0"),
        events=[EventIn("purchase", {"a": [1, 2.5]}, {"page": {"url": "u"}}, NOW, "order:1")],
        identities=[person, IdentityRef("email_sha256", "ab" * 32)],
        profile_hint="p",
        session_key="s",
        session_context={"landing_page": "u"},
        visit_key="visitor:42",
        traits=TraitsPatch(set={"plan": "gold"}, remove=["old"]),
        unlink=[IdentityRef("email_sha256", "cd" * 32)],
        merges=[MergeRequest(IdentityRef("guest", "g", scope="src"), person, "guest-registered")],
        cart=CartChange("replace", (CartItem("sku", Decimal("1"), Decimal("9.99"), {"name": "Tea"}),)),
    )


def test_a_valid_batch_passes() -> None:
    check_batch(full_batch(), NOW)


def _break(batch: IngestBatch, where: str) -> list[Any]:
    """Spoil one field of the batch; return the loc check_batch must name."""
    bad = "x\x00"
    if where == "event type":
        batch.events[0].type = bad
        return ["batch", "events", 0, "type"]
    if where == "property":
        batch.events[0].properties["a"][1] = float("nan")
        return ["batch", "events", 0, "properties", "a", 1]
    if where == "context key":
        batch.events[0].context["\ud800"] = 1
        return ["batch", "events", 0, "context", "\\ud800"]
    if where == "time":
        batch.events[0].time = datetime(1, 1, 1, tzinfo=UTC)
        return ["batch", "events", 0, "time"]
    if where == "dedup key":
        batch.events[0].dedup_key = "k" * 256
        return ["batch", "events", 0, "dedup_key"]
    if where == "identity":
        batch.identities[1] = IdentityRef("email_sha256", bad)
        return ["batch", "identities", 1, "value"]
    if where == "unlink":
        batch.unlink[0] = IdentityRef("email_sha256", "x", scope=bad)
        return ["batch", "unlink", 0, "scope"]
    if where == "profile hint":
        batch.profile_hint = bad
        return ["batch", "profile_hint"]
    if where == "session key":
        batch.session_key = "s" * 129
        return ["batch", "session_key"]
    if where == "session context":
        batch.session_context["utm"] = {"utm_source": 2**64}
        return ["batch", "session_context", "utm", "utm_source"]
    if where == "trait":
        batch.traits.set["deep"] = nested(MAX_STORED_DEPTH)
        return ["batch", "traits", "set", "deep"]
    if where == "trait removed":
        batch.traits.remove.append(bad)
        return ["batch", "traits", "remove", 1]
    if where == "merge":
        batch.merges[0] = MergeRequest(IdentityRef("guest", bad), batch.identities[0], "x")
        return ["batch", "merges", 0, "src", "value"]
    if where == "cart price":
        batch.cart = CartChange("add", (CartItem("sku", Decimal(1), Decimal("Infinity")),))
        return ["batch", "cart", "items", 0, "price"]
    if where == "cart extra":
        batch.cart = CartChange("add", (CartItem("sku", Decimal(1), None, {"n": "\x00"}),))
        return ["batch", "cart", "items", 0, "extra", "n"]
    raise AssertionError(where)


@pytest.mark.parametrize(
    "where",
    [
        "event type",
        "property",
        "context key",
        "time",
        "dedup key",
        "identity",
        "unlink",
        "profile hint",
        "session key",
        "session context",
        "trait",
        "trait removed",
        "merge",
        "cart price",
        "cart extra",
    ],
)
def test_check_batch_names_the_batch_field(where: str) -> None:
    batch = full_batch()
    loc = _break(batch, where)
    with pytest.raises(ValidationFailed) as raised:
        check_batch(batch, NOW)
    found = raised.value.detail[0]
    if found["type"] == "too_deep":
        assert found["msg"] == f"Nested deeper than {MAX_STORED_DEPTH} levels of objects and arrays."
        assert len(found["loc"]) == len(loc) + MAX_STORED_DEPTH - 1
        found["loc"] = found["loc"][: len(loc)]
    assert found["loc"] == loc, raised.value.detail
