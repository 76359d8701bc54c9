"""The condition language's validation: pydantic models, and errors whose ``loc`` walks the tree.

``parse_condition(raw, loc)`` takes the decoded JSON (a ``where`` query parameter, a body's
``condition``), refuses a tree deeper than ``MAX_DEPTH`` before pydantic recurses into it,
validates it, and returns the normalized tree ``db/conditions.py`` compiles. Every problem is
a 422 whose ``loc`` starts at ``loc`` and names the node and the field, e.g.
``["body", "condition", "all", 1, "op"]``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from trackway.api.inputs import storable_text
from trackway.db.conditions import MAX_DEPTH, OPS
from trackway.errors import ValidationFailed

#: Nodes one tree may hold: each is a piece of SQL.
MAX_NODES = 200
MAX_LIST = 100


def _property_name(value: str) -> str:
    storable_text(value)
    if any(not key for key in value.split(".")):
        raise ValueError("a property is keys separated by dots, none empty")
    if '"' in value or "\\" in value:
        raise ValueError("a property name holds no quote or backslash")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


PropertyName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_property_name)]
MAX_TEXT = 1000


def _scalar(value: Any, where: str = "") -> None:
    """A value a leaf compares with: a boolean, a number (64-bit integer or finite), a string."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise ValueError(f"{where}an integer fits in 64 bits")
        return
    if isinstance(value, float):
        _finite(value)
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"{where}a string has at most {MAX_TEXT} characters")
        storable_text(value)
        return
    raise ValueError(f"{where}must be a boolean, a number or a string")


Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "starts_with", "in", "exists", "not_exists"]
assert set(Op.__args__) == set(OPS)  # type: ignore[attr-defined]

_STRICT = ConfigDict(extra="forbid", strict=True)


class PropertyLeaf(BaseModel):
    """``{"property": "age", "op": "gte", "value": 25}``: a trait (or an event property) compared."""

    model_config = _STRICT

    property: PropertyName = Field(description="A key, or keys separated by dots (address.city).")
    op: Op
    value: Any = Field(None, validate_default=True, description="A boolean, number or string; a list for in.")

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:  # the op itself was refused: one error is enough
            return value
        if op in ("exists", "not_exists"):
            if value is not None:
                raise ValueError(f"{op} takes no value")
        elif op == "in":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
                raise ValueError(f"in takes a list of 1 to {MAX_LIST} values")
            for i, item in enumerate(value):
                _scalar(item, f"item {i}: ")
        elif value is None or isinstance(value, list):
            raise ValueError(f"{op} takes one value")
        else:
            _scalar(value)
        if op in ("exists", "not_exists", "in"):
            return value
        if op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
            raise ValueError(f"{op} takes a number or a string")
        if op in ("contains", "starts_with") and not isinstance(value, str):
            raise ValueError(f"{op} takes a string")
        return value


class EventLeaf(BaseModel):
    """``{"event": "purchase", "within_days": 60, "where": [...]}``: the person did the event (or not)."""

    model_config = _STRICT

    event: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(storable_text)]
    performed: bool = True
    within_days: int | None = Field(None, ge=1, le=36500)
    min_count: int = Field(1, ge=1, le=1_000_000)
    where: list[PropertyLeaf] = Field(default_factory=list, max_length=20)


class GroupLeaf(BaseModel):
    """``{"group": "acme"}``: the person is a member of the group, i.e. some call put them in it
    (a Segment ``group`` call: an event ``group`` whose ``groupId`` is the group's id)."""

    model_config = _STRICT

    group: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(storable_text)]


class AllNode(BaseModel):
    model_config = _STRICT

    all: list[Condition] = Field(max_length=MAX_LIST)


class AnyNode(BaseModel):
    model_config = _STRICT

    any: list[Condition] = Field(max_length=MAX_LIST)


class NotNode(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    not_: Condition = Field(alias="not")


#: Union tags; dropped from error locations (the keys the user wrote are what ``loc`` names).
_TAGS = {
    "all": "<all>",
    "any": "<any>",
    "not": "<not>",
    "property": "<property>",
    "event": "<event>",
    "group": "<group>",
}


def _kind(node: Any) -> str | None:
    if isinstance(node, BaseModel):  # serializing a validated tree
        return _MODEL_TAGS.get(type(node))
    if isinstance(node, dict):
        for key, tag in _TAGS.items():
            if key in node:
                return tag
    return None


Condition = Annotated[
    Annotated[AllNode, Tag("<all>")]
    | Annotated[AnyNode, Tag("<any>")]
    | Annotated[NotNode, Tag("<not>")]
    | Annotated[PropertyLeaf, Tag("<property>")]
    | Annotated[EventLeaf, Tag("<event>")]
    | Annotated[GroupLeaf, Tag("<group>")],
    Discriminator(
        _kind,
        custom_error_type="condition",
        custom_error_message="expected an object with one of all, any, not, property, event, group",
    ),
]

_MODEL_TAGS: dict[type, str] = {
    AllNode: "<all>",
    AnyNode: "<any>",
    NotNode: "<not>",
    PropertyLeaf: "<property>",
    EventLeaf: "<event>",
    GroupLeaf: "<group>",
}
AllNode.model_rebuild()
AnyNode.model_rebuild()
NotNode.model_rebuild()
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)

#: For the OpenAPI document: a condition is a JSON object (its grammar is in the README).
CONDITION_DESCRIPTION = (
    "A condition tree: {all: [...]}, {any: [...]}, {not: {...}}, "
    "{property, op, value}, {event, performed, within_days, min_count, where} or {group}; "
    'see README "The condition language".'
)


def _shape(raw: Any, loc: tuple[str | int, ...]) -> None:
    """Refuse a tree deeper than ``MAX_DEPTH`` or with more than ``MAX_NODES`` nodes, iteratively
    (pydantic would recurse into any depth), naming the first node too deep."""
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(raw, (), 1)]
    nodes = 0
    while stack:
        node, path, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        nodes += 1
        if depth > MAX_DEPTH:
            raise ValidationFailed.field((*loc, *path), f"a condition is at most {MAX_DEPTH} levels deep")
        if nodes > MAX_NODES:
            raise ValidationFailed.field((*loc, *path), f"a condition has at most {MAX_NODES} nodes")
        for key in ("all", "any"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend(
                    (child, (*path, key, i), depth + 1) for i, child in enumerate(children[:MAX_LIST])
                )
        if isinstance(node.get("not"), dict):
            stack.append((node["not"], (*path, "not"), depth + 1))


def parse_condition(raw: Any, loc: tuple[str | int, ...]) -> dict[str, Any]:
    """The validated, normalized tree (plain JSON), or a 422 naming the field under ``loc``."""
    _shape(raw, loc)
    try:
        model = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        tags = set(_TAGS.values())
        raise ValidationFailed(
            [
                {
                    "loc": [*loc, *(part for part in error["loc"] if part not in tags)],
                    "msg": error["msg"],
                    "type": error["type"],
                }
                for error in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
        ) from None
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return dumped


def condition_json_schema() -> dict[str, Any]:
    return {"type": "object", "description": CONDITION_DESCRIPTION}


__all__ = ["CONDITION_DESCRIPTION", "Condition", "parse_condition"]
