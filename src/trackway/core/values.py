"""The one rule for what a client value may be, so that both databases store it exactly.

Every dialect passes the values it parsed through these checks before anything touches the
database, with ``loc`` in its own wire terms; ``check_batch`` is the core's last guard over a
whole ``IngestBatch``. The rule ("Accepted values" in the README):

* strings (object keys too) hold no U+0000 (PostgreSQL's text and JSONB cannot store it)
  and no lone surrogate U+D800-U+DFFF (not UTF-8: neither database nor the JSON encoder takes it);
* integers are signed 64-bit, ``-2**63 .. 2**63-1``: what PostgreSQL's JSONB and bigint and
  SQLite's JSON all store exactly, and what the JSON encoder (orjson) writes;
* numbers are finite: NaN, Infinity and a literal that overflows a double (``1e400``) are refused;
* a JSON value (``properties``, ``context``, ``data``, traits...) nests at most ``MAX_DEPTH``
  objects and arrays, counting itself;
* an event time lies in ``EARLIEST`` .. now + ``FUTURE_SLACK``.

Anything else is a 422 naming the field: a ``ValidationFailed`` with a pydantic-like ``loc``.
The walk is one recursive pass over the parsed values (bounded by ``MAX_DEPTH``), no
re-serialisation: it runs on every collector request.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from trackway.core.batch import IdentityRef, IngestBatch
from trackway.errors import ValidationFailed

Loc = tuple[str | int, ...]

#: Objects and arrays a client's JSON value may nest, counting itself (``{"a": {"b": 1}}`` is 2).
MAX_DEPTH = 32
#: What ``check_batch`` allows in a stored document: the dialects wrap client values in a few
#: containers of their own (``context.tracker.properties``), and read responses wrap stored
#: documents again; orjson stops at 255 levels, so this leaves ample room on both sides.
MAX_STORED_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
#: Event times before the Unix epoch are refused: no tracker sends them, SQLite's text dates
#: only sort and parse for four-digit years, and a time zone offset must not push one out of range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: Clocks drift: a client's time may run this far ahead of the server's.
FUTURE_SLACK = timedelta(days=1)

MSG_NUL = "Must not contain NUL characters (U+0000)."
MSG_SURROGATE = "Must not contain lone surrogates (U+D800-U+DFFF)."
MSG_KEY_NUL = "Keys must not contain NUL characters (U+0000)."
MSG_KEY_SURROGATE = "Keys must not contain lone surrogates (U+D800-U+DFFF)."
MSG_INT = f"Integer out of range: integers must be within {INT_MIN} .. {INT_MAX} (signed 64-bit)."
MSG_NOT_FINITE = "Numbers must be finite: no NaN, Infinity, or a value beyond a double's range."
MSG_TIME = (
    f"Event time out of range: it must lie between {EARLIEST:%Y-%m-%dT%H:%MZ} and "
    f"{FUTURE_SLACK.days} day after the server's clock."
)

_SURROGATE = re.compile("[\ud800-\udfff]")

#: A problem: the path below the checked value (innermost last), the message, the error type.
Problem = tuple[list[str | int], str, str]


def string_problem(text: str) -> str | None:
    """Why a string cannot be stored, or ``None``."""
    if "\x00" in text:
        return MSG_NUL
    if not text.isascii() and _SURROGATE.search(text) is not None:
        return MSG_SURROGATE
    return None


def printable_key(key: str) -> str:
    """A key as a ``loc`` can name it: a lone surrogate cannot be written as JSON, so it is escaped."""
    if key.isascii() or _SURROGATE.search(key) is None:
        return key
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _key_problem(key: Any) -> str | None:
    if type(key) is not str:
        return "Keys must be strings."
    if "\x00" in key:
        return MSG_KEY_NUL
    if not key.isascii() and _SURROGATE.search(key) is not None:
        return MSG_KEY_SURROGATE
    return None


def _walk(value: Any, depth: int, max_depth: int) -> Problem | None:
    """The first problem in ``value``, ``depth`` being the containers already around it.

    The path is built on the way back out, so a clean value costs no tuple per item.
    """
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            return [], MSG_NUL, "value_error"
        if not value.isascii() and _SURROGATE.search(value) is not None:
            return [], MSG_SURROGATE, "value_error"
        return None
    if value is None or kind is bool:
        return None
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else ([], MSG_INT, "int_range")
    if kind is float:
        return None if math.isfinite(value) else ([], MSG_NOT_FINITE, "finite_number")
    if kind is dict:
        if not value:
            return None
        if depth >= max_depth:
            return [], "", "too_deep"
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not key.isascii():
                problem = _key_problem(key)
                if problem is not None:
                    return [key], problem, "value_error"
            # Scalars, the common case, without a call:
            item_kind = type(item)
            if item_kind is str:
                if "\x00" in item or (not item.isascii() and _SURROGATE.search(item) is not None):
                    return [key], MSG_NUL if "\x00" in item else MSG_SURROGATE, "value_error"
                continue
            if item_kind is int:
                if INT_MIN <= item <= INT_MAX:
                    continue
            elif item is None or item_kind is bool:
                continue
            found = _walk(item, depth + 1, max_depth)
            if found is not None:
                found[0].append(key)
                return found
        return None
    if kind is list or kind is tuple:
        if not value:
            return None
        if depth >= max_depth:
            return [], "", "too_deep"
        for index, item in enumerate(value):
            found = _walk(item, depth + 1, max_depth)
            if found is not None:
                found[0].append(index)
                return found
        return None
    if isinstance(value, Decimal):
        # Exact decimals (InSend's prices) are stored as strings; free-form ones become floats.
        if value.is_finite() and math.isfinite(float(value)):
            return None
        return [], MSG_NOT_FINITE, "finite_number"
    if isinstance(value, bool | int | float | str | dict | list):  # subclasses: checked as their base
        return _walk(_base(value), depth, max_depth)
    return [], f"Not a JSON value: {kind.__name__}.", "type_error"


def _base(value: Any) -> Any:
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return dict(value) if isinstance(value, dict) else list(value)


def walk(value: Any, max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first problem in ``value`` with its path below it, or ``None``: for hot paths that
    build a ``loc`` only when there is something to report (``problem_at``)."""
    return _walk(value, 0, max_depth)


def problem_at(loc: Loc, found: Problem, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """A problem found by ``walk`` below ``loc``, as a pydantic-like error dict."""
    path, msg, type_ = found
    path = path[::-1]
    if type_ == "too_deep":
        msg = f"Nested deeper than {max_depth} levels of objects and arrays."
    elif type_ == "value_error" and path and type(path[-1]) is str and msg.startswith("Keys"):
        path[-1] = printable_key(path[-1])
    return {"loc": [*loc, *path], "msg": msg, "type": type_}


def value_problem(value: Any, loc: Loc, max_depth: int = MAX_DEPTH) -> dict[str, Any] | None:
    """The first reason ``value`` cannot be stored, as a pydantic-like error dict, or ``None``."""
    found = _walk(value, 0, max_depth)
    return None if found is None else problem_at(loc, found, max_depth)


def check_value(value: Any, loc: Loc, max_depth: int = MAX_DEPTH) -> None:
    """Raise a 422 naming the first part of ``value`` that cannot be stored."""
    problem = value_problem(value, loc, max_depth)
    if problem is not None:
        raise ValidationFailed([problem])


def check_string(text: str, loc: Loc, max_length: int | None = None) -> None:
    """A string that becomes a column (an id, a type): storable, and at most ``max_length``."""
    if type(text) is not str:
        raise ValidationFailed.field(loc, "Input should be a valid string", "string_type")
    problem = string_problem(text)
    if problem is not None:
        raise ValidationFailed.field(loc, problem)
    if max_length is not None and len(text) > max_length:
        raise ValidationFailed.field(loc, f"At most {max_length} characters.", "string_too_long")


def time_problem(value: datetime, now: datetime | None = None) -> str | None:
    """Why an event time is refused, or ``None``. Naive times are taken as UTC."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00+01:00 has no UTC time
        return MSG_TIME
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    return None if EARLIEST <= utc <= latest else MSG_TIME


def check_event_time(value: datetime, loc: Loc, now: datetime | None = None) -> datetime:
    """The event time in UTC, or a 422 when it lies outside ``EARLIEST`` .. now + ``FUTURE_SLACK``."""
    problem = time_problem(value, now)
    if problem is not None:
        raise ValidationFailed.field(loc, problem, "datetime_range")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the core's last guard --------------------------------------------------------------------

#: Column widths (db/models.py) of the strings a batch becomes.
KEY_LENGTH = 128
LONG_KEY_LENGTH = 255
KIND_LENGTH = 32
REASON_LENGTH = 64


def _identity(ref: IdentityRef, loc: Loc) -> None:
    check_string(ref.kind, (*loc, "kind"), KIND_LENGTH)
    check_string(ref.value, (*loc, "value"), LONG_KEY_LENGTH)
    check_string(ref.scope, (*loc, "scope"), KEY_LENGTH)


def _document(value: Any, loc: Loc) -> None:
    if type(value) is not dict:
        raise ValidationFailed.field(loc, "Must be an object.", "dict_type")
    check_value(value, loc, MAX_STORED_DEPTH)


def _number(value: Decimal | None, loc: Loc) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed.field(loc, "Must be a finite decimal.", "decimal_type")


def check_batch(batch: IngestBatch, now: datetime | None = None) -> None:
    """Everything a batch would store, checked against the rule; a 422 with ``loc`` ``["batch", ...]``.

    The dialects check their wire values first and name them in wire terms; this guards the
    core against a dialect that forgot one. It allows ``MAX_STORED_DEPTH`` levels, since the
    dialects wrap client values in containers of their own.
    """
    root: Loc = ("batch",)
    check_string(batch.source.id, (*root, "source", "id"), KEY_LENGTH)
    for index, event in enumerate(batch.events):
        loc = (*root, "events", index)
        check_string(event.type, (*loc, "type"), LONG_KEY_LENGTH)
        _document(event.properties, (*loc, "properties"))
        _document(event.context, (*loc, "context"))
        if event.time is not None:
            check_event_time(event.time, (*loc, "time"), now)
        if event.dedup_key is not None:
            check_string(event.dedup_key, (*loc, "dedup_key"), LONG_KEY_LENGTH)
    for name, refs in (("identities", batch.identities), ("unlink", batch.unlink)):
        for index, ref in enumerate(refs):
            _identity(ref, (*root, name, index))
    if batch.profile_hint is not None:
        check_string(batch.profile_hint, (*root, "profile_hint"), LONG_KEY_LENGTH)
    if batch.session_key is not None:
        check_string(batch.session_key, (*root, "session_key"), KEY_LENGTH)
    if batch.visit_key is not None:
        check_string(batch.visit_key, (*root, "visit_key"), LONG_KEY_LENGTH)
    _document(batch.session_context, (*root, "session_context"))
    _document(batch.traits.set, (*root, "traits", "set"))
    for index, name in enumerate(batch.traits.remove):
        check_string(name, (*root, "traits", "remove", index))
    for index, merge in enumerate(batch.merges):
        loc = (*root, "merges", index)
        _identity(merge.src, (*loc, "src"))
        _identity(merge.dest, (*loc, "dest"))
        check_string(merge.reason, (*loc, "reason"), REASON_LENGTH)
    if batch.cart is not None:
        for index, item in enumerate(batch.cart.items):
            loc = (*root, "cart", "items", index)
            check_string(item.product_id, (*loc, "product_id"), LONG_KEY_LENGTH)
            _number(item.qnt, (*loc, "qnt"))
            _number(item.price, (*loc, "price"))
            _document(item.extra, (*loc, "extra"))
    meta = batch.meta
    for name in ("user_agent", "ip", "referer", "origin"):
        text = getattr(meta, name)
        if text is not None:
            check_string(text, (*root, "meta", name))
