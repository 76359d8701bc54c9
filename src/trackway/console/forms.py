"""Form fields to API bodies: the builders' rows to a condition tree, typed values, date ranges.

Only translation lives here; every rule (what a condition may hold, which fields a metric
type needs) is the API's, which answers a 422 naming the field when a form gets it wrong.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl

from trackway import jsonutil

PROPERTY_OPS: Final = {
    "eq": "is",
    "ne": "is not",
    "gt": "greater than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "contains": "contains",
    "starts_with": "starts with",
    "in": "is one of (comma-separated)",
    "exists": "is set",
    "not_exists": "is not set",
}
EVENT_OPS: Final = {"did": "did the event", "did_not": "did not do the event"}

METRIC_TYPES: Final = {
    "people_who_did": "Number of people who did an event",
    "times_happened": "Number of times an event happened",
    "average_per_person": "Average times an event happened per person",
    "conversion_rate": "Conversion rate between two events",
    "average_time_between": "Average time between two events",
    "property_total": "Total value of a property",
    "property_average": "Average value of a property",
}
RANGES: Final = {"7": "Last 7 days", "14": "Last 14 days", "30": "Last 30 days", "90": "Last 90 days"}


class Form:
    """A url-encoded form body: the last value of each name, or all of them."""

    def __init__(self, body: bytes) -> None:
        self.pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        self.values = dict(self.pairs)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def typed(text: str) -> Any:
    """A value typed into a form as JSON would hold it: ``25`` a number, ``true`` a boolean,
    ``"25"`` (quoted) the text 25, anything else text."""
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d{1,18}", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+([eE][-+]?\d+)?", text):
        return float(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def rows_of(form: Form) -> list[dict[str, str]]:
    """The builder's condition rows as typed (blank rows dropped)."""
    kinds, fields, ops = form.all("kind"), form.all("field"), form.all("op")
    values, days = form.all("value"), form.all("days")
    rows = []
    for i, kind in enumerate(kinds):
        field = fields[i].strip() if i < len(fields) else ""
        if not field:
            continue
        rows.append(
            {
                "kind": kind,
                "field": field,
                "op": ops[i] if i < len(ops) else "eq",
                "value": values[i] if i < len(values) else "",
                "days": days[i].strip() if i < len(days) else "",
            }
        )
    return rows


def condition_of(form: Form) -> dict[str, Any] | str:
    """The condition tree of the builder, or of the JSON box when filled; a string: why not."""
    raw = form.get("condition_json")
    if raw:
        try:
            tree = jsonutil.loads(raw)
        except ValueError:
            return "The condition JSON does not parse."
        return tree if isinstance(tree, dict) else "The condition JSON must be an object."
    leaves: list[dict[str, Any]] = []
    for row in rows_of(form):
        if row["kind"] == "event":
            leaf: dict[str, Any] = {"event": row["field"], "performed": row["op"] != "did_not"}
            if row["days"]:
                leaf["within_days"] = typed(row["days"])
            if row["value"].strip():
                leaf["min_count"] = typed(row["value"])
            leaves.append(leaf)
            continue
        leaf = {"property": row["field"], "op": row["op"]}
        if row["op"] == "in":
            leaf["value"] = [typed(part) for part in row["value"].split(",") if part.strip()]
        elif row["op"] not in ("exists", "not_exists"):
            leaf["value"] = typed(row["value"])
        leaves.append(leaf)
    return {"any" if form.get("combine") == "any" else "all": leaves}


_EVENT_KEYS: Final = {"event", "performed", "within_days", "min_count"}
_PROPERTY_KEYS: Final = {"property", "op", "value"}


def flat(condition: Any) -> bool:
    """Whether the builder's rows can show ``condition``: one AND or OR of plain leaves."""
    if not isinstance(condition, dict) or len(condition) != 1:
        return False
    [(key, leaves)] = condition.items()
    return key in ("all", "any") and all(
        isinstance(leaf, dict)
        and (set(leaf) <= _EVENT_KEYS if "event" in leaf else set(leaf) <= _PROPERTY_KEYS)
        for leaf in leaves
    )


def rows_for(condition: Any) -> tuple[str, list[dict[str, str]]]:
    """A condition back into builder rows, when it is one level of all/any over leaves."""
    if not isinstance(condition, dict):
        return "all", []
    combine = "any" if "any" in condition else "all"
    rows = []
    for leaf in condition.get(combine, []) if combine in condition else [condition]:
        if "event" in leaf:
            rows.append(
                {
                    "kind": "event",
                    "field": leaf["event"],
                    "op": "did" if leaf.get("performed", True) else "did_not",
                    "value": str(leaf.get("min_count", "")),
                    "days": str(leaf.get("within_days", "")),
                }
            )
        elif "property" in leaf:
            value = leaf.get("value", "")
            text = ", ".join(map(str, value)) if isinstance(value, list) else jsonutil.dumps_str(value)
            if isinstance(value, str):
                text = value
            rows.append(
                {"kind": "property", "field": leaf["property"], "op": leaf["op"], "value": text, "days": ""}
            )
    return combine, rows


def date_range(query: dict[str, str], today: date) -> tuple[str, str, str]:
    """``(range, from, to)``: a preset (``7``, ``30``...) counted back from today, or ``custom``
    with the dates given (also when dates come without a preset)."""
    preset = query.get("range", "")
    first, last = query.get("from", ""), query.get("to", "")
    if preset == "custom" or (not preset and (first or last)):
        return "custom", first, last
    days = int(preset) if preset in RANGES else 7
    return str(days), (today - timedelta(days=days - 1)).isoformat(), today.isoformat()
