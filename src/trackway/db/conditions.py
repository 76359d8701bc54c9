"""The condition language compiled to SQLAlchemy Core, the same meaning on PostgreSQL and SQLite.

A condition is a JSON tree (README, "The condition language"), already validated by the API
layer (``api/conditions.py``); here it becomes a boolean SQL expression over ``profiles``:

- ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``;
- a property leaf ``{"property": "age", "op": "gte", "value": 25}`` on a profile's traits
  (or, inside an event leaf's ``where``, on the event's properties);
- an event leaf ``{"event": "purchase", "performed": true, "within_days": 60,
  "min_count": 1, "where": [<property leaves>]}``: a correlated count of the person's events;
- a group leaf ``{"group": "acme"}``: the person has a ``group`` event (Segment's ``group``
  call) whose ``groupId`` is ``"acme"``.

Comparisons are JSON type-aware: a number compares with numbers only, a string with strings
only (bytewise: ``C`` collation on PostgreSQL, SQLite's ``BINARY``), a boolean with booleans;
a stored value of another type simply does not match. Every leaf is true or false, never
NULL, so ``not`` is the exact complement (``ne`` is ``not eq``: a person without the
property is "not equal"). Values are bound parameters; nothing of the tree is pasted into SQL.

``dialect`` is the connection's dialect name (``db.dialect.name``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from trackway.db.models import events, profiles

#: The deepest tree a caller may send (the API refuses deeper ones with a 422).
MAX_DEPTH = 10

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "exists", "not_exists")
_ORDER = {"gt": "__gt__", "gte": "__ge__", "lt": "__lt__", "lte": "__le__"}


class ConditionError(ValueError):
    """A tree this module cannot compile (only a stored condition from another version could be one)."""


def path_of(prop: str) -> list[str]:
    """``"address.city"``: the keys from the JSON object's top, split on dots."""
    return prop.split(".")


class _Json:
    """One JSON value at a path of a JSON column, with the dialect's accessors."""

    def __init__(self, column: Any, path: Sequence[str], dialect: str) -> None:
        self.pg = dialect == "postgresql"
        if self.pg:
            self.kind = func.jsonb_typeof(func.jsonb_extract_path(column, *[literal(k, Text) for k in path]))
            self.text = func.jsonb_extract_path_text(column, *[literal(k, Text) for k in path])
        else:
            # '$."a"."b"': keys quoted (the API refuses keys holding a quote or a backslash).
            json_path = literal("$" + "".join(f'."{k}"' for k in path), Text)
            self.kind = func.json_type(column, json_path)
            self.text = func.json_extract(column, json_path)

    def is_number(self) -> ColumnElement[bool]:
        return self.kind == "number" if self.pg else self.kind.in_(("integer", "real"))

    def is_string(self) -> ColumnElement[bool]:
        return self.kind == "string" if self.pg else self.kind == "text"

    def is_bool(self, value: bool) -> ColumnElement[bool]:
        if self.pg:
            return and_(self.kind == "boolean", self.text == ("true" if value else "false"))
        return self.kind == ("true" if value else "false")

    def number(self) -> ColumnElement[Any]:
        """The value as a number, NULL when it is not one (a CASE: no cast is tried on text)."""
        if self.pg:
            return case((self.is_number(), cast(self.text, Numeric)), else_=None)
        return case((self.is_number(), self.text), else_=None)

    def string(self) -> ColumnElement[Any]:
        """The value as text, NULL when it is not a string."""
        value = case((self.is_string(), self.text), else_=None)
        return value.collate("C") if self.pg else value

    def bind_number(self, value: int | float) -> ColumnElement[Any]:
        if self.pg:
            return literal(Decimal(repr(value)) if isinstance(value, float) else Decimal(value), Numeric)
        return literal(value)

    def bind_string(self, value: str) -> ColumnElement[Any]:
        return literal(value, Text).collate("C") if self.pg else literal(value, Text)


def _definite(expr: ColumnElement[Any]) -> ColumnElement[bool]:
    """``expr`` with NULL (a missing or other-typed value) read as false."""
    return case((expr, true()), else_=false())


def _equals(value: _Json, expected: Any) -> ColumnElement[bool]:
    if isinstance(expected, bool):
        return _definite(value.is_bool(expected))
    if isinstance(expected, int | float):
        return _definite(value.number() == value.bind_number(expected))
    if isinstance(expected, str):
        return _definite(value.string() == value.bind_string(expected))
    raise ConditionError(f"cannot compare with {type(expected).__name__}")


def property_leaf(column: Any, leaf: dict[str, Any], dialect: str) -> ColumnElement[bool]:
    """A property leaf on ``column`` (a JSON object column: traits, or an event's properties)."""
    prop, op, expected = leaf.get("property"), leaf.get("op"), leaf.get("value")
    if not isinstance(prop, str) or not prop or op not in OPS:
        raise ConditionError("not a property leaf")
    value = _Json(column, path_of(prop), dialect)
    if op == "exists":
        return _definite(value.kind.is_not(None))
    if op == "not_exists":
        return _definite(value.kind.is_(None))
    if op == "eq":
        return _equals(value, expected)
    if op == "ne":
        return not_(_equals(value, expected))
    if op == "in":
        if not isinstance(expected, list) or not expected:
            raise ConditionError("in takes a non-empty list")
        return or_(*(_equals(value, item) for item in expected))
    if op in _ORDER:
        if isinstance(expected, bool) or not isinstance(expected, int | float | str):
            raise ConditionError(f"{op} takes a number or a string")
        if isinstance(expected, str):
            left, right = value.string(), value.bind_string(expected)
        else:
            left, right = value.number(), value.bind_number(expected)
        return _definite(getattr(left, _ORDER[op])(right))
    if not isinstance(expected, str):
        raise ConditionError(f"{op} takes a string")
    text = value.string()
    if op == "contains":
        found = (
            func.strpos(text, literal(expected, Text)) if value.pg else func.instr(text, literal(expected))
        )
        return _definite(found > 0)
    # starts_with: the first len(value) characters are the value (no LIKE: no wildcards to escape).
    prefix = func.substr(text, 1, len(expected))
    return _definite(prefix == value.bind_string(expected))


def event_leaf(
    leaf: dict[str, Any], dialect: str, now: datetime, profile_id: Any = None, *, include_bots: bool = False
) -> ColumnElement[bool]:
    """The person (``profile_id``, by default the outer ``profiles.id``) did (or did not) the event.

    Bots' events (``"bot": true`` in their context, ``core/bots.py``) count only with ``include_bots``.
    """
    event_type = leaf.get("event")
    if not isinstance(event_type, str):
        raise ConditionError("not an event leaf")
    person = profiles.c.id if profile_id is None else profile_id
    where: list[ColumnElement[bool]] = [events.c.profile_id == person, events.c.type == event_type]
    within = leaf.get("within_days")
    if within is not None:
        where.append(events.c.time >= now - timedelta(days=int(within)))
    for prop in leaf.get("where") or ():
        where.append(property_leaf(events.c.properties, prop, dialect))
    if not include_bots:
        where.append(events.c.bot == false())
    min_count = int(leaf.get("min_count", 1))
    if min_count <= 1:
        did: ColumnElement[bool] = exists(select(literal(1)).where(*where))
    else:
        did = select(func.count()).where(*where).scalar_subquery() >= min_count
    return did if leaf.get("performed", True) else not_(did)


def compile_condition(
    tree: dict[str, Any], dialect: str, now: datetime, *, depth: int = 1, include_bots: bool = False
) -> ColumnElement[bool]:
    """The tree as a boolean expression over the ``profiles`` row of the enclosing query."""
    if depth > MAX_DEPTH or not isinstance(tree, dict):
        raise ConditionError("not a condition")
    inner: Callable[[Any], ColumnElement[bool]] = lambda node: compile_condition(  # noqa: E731
        node, dialect, now, depth=depth + 1, include_bots=include_bots
    )
    if "all" in tree:
        parts = [inner(node) for node in tree["all"]]
        return and_(true(), *parts) if parts else true()
    if "any" in tree:
        parts = [inner(node) for node in tree["any"]]
        return or_(false(), *parts) if parts else false()
    if "not" in tree:
        return not_(inner(tree["not"]))
    if "property" in tree:
        return property_leaf(profiles.c.traits, tree, dialect)
    if "event" in tree:
        return event_leaf(tree, dialect, now, include_bots=include_bots)
    if "group" in tree:
        # Membership is the person's group events (Segment's ``group`` call) naming the group.
        where = [{"property": "groupId", "op": "eq", "value": tree["group"]}]
        return event_leaf({"event": "group", "where": where}, dialect, now, include_bots=include_bots)
    raise ConditionError("not a condition")
