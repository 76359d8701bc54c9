"""Read API: metrics (seven types) and funnels, asked ad hoc or saved by name.

Dates are calendar days in ``timezone`` (an IANA name, UTC by default), ``from`` and ``to``
included, at most 366 days. Every problem with the input is a 422 naming its field.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from trackway.api.deps import AdminAuth, Limit
from trackway.api.inputs import PathId, storable_text
from trackway.db import analytics
from trackway.db.models import saved_funnels, saved_metrics
from trackway.errors import NotFound, ValidationFailed
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["analytics"], dependencies=[AdminAuth])

MAX_DAYS = 366
EARLIEST = date(1900, 1, 1)
LATEST = date(9998, 12, 31)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, or a name that is not a path zoneinfo can read
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None
    return name


def _property_name(name: str) -> str:
    if '"' in name or "\\" in name:
        raise ValueError('a property name must not contain " or \\')
    return name


def _day(value: date) -> date:
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")
    return value


EventType = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(storable_text)]
SourceId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(storable_text)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable_text)]
PropertyName = Annotated[
    str, Field(min_length=1, max_length=255), AfterValidator(storable_text), AfterValidator(_property_name)
]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]
Day = Annotated[date, AfterValidator(_day)]
#: A JSON scalar a property is compared with; integers as wide as both databases hold.
Scalar = (
    StrictBool
    | Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[str, Field(max_length=1000), AfterValidator(storable_text)]
    | None
)


class WhereCondition(BaseModel):
    """``properties[property] == value``; the full condition language is another part of issue 15."""

    model_config = ConfigDict(extra="forbid")

    property: PropertyName
    op: Literal["eq"] = "eq"
    value: Scalar


class MetricDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: analytics.MetricType
    event: EventType
    second_event: EventType | None = Field(
        None, description="conversion_rate and average_time_between: the event that follows."
    )
    property: PropertyName | None = Field(
        None, description="property_total and property_average: a numeric event property."
    )
    where: list[WhereCondition] = Field(
        default_factory=list, max_length=20, description="Only events whose properties match all of these."
    )
    repeatable: bool = Field(
        False,
        description="conversion_rate: every `event` is a start (purchases), not one per person (signups).",
    )
    per: Literal["times", "people", "all_people"] = Field(
        "times",
        description="property_average: divide by the times the property was a number, the people who "
        "did the event, or every live profile.",
    )
    timezone: TimeZone = "UTC"
    source: SourceId | None = None
    include_bots: bool = Field(
        False, description='Count the events of bots too (flagged "bot": true); left out by default.'
    )


class MetricQuery(MetricDefinition):
    from_: Day = Field(alias="from")
    to: Day


class MetricCreate(MetricDefinition):
    name: Name


class MetricPatch(BaseModel):
    """What ``PATCH /api/metrics/{id}`` may change: any field of a saved metric; the rest stays."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    type: analytics.MetricType | None = None
    event: EventType | None = None
    second_event: EventType | None = None
    property: PropertyName | None = None
    where: list[WhereCondition] | None = Field(None, max_length=20)
    repeatable: bool | None = None
    per: Literal["times", "people", "all_people"] | None = None
    timezone: TimeZone | None = None
    source: SourceId | None = None


Steps = Annotated[list[EventType], Field(min_length=2, max_length=20)]


class FunnelQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: Steps
    from_: Day = Field(alias="from")
    to: Day
    source: SourceId | None = None
    timezone: TimeZone = "UTC"
    include_bots: bool = Field(
        False, description='Count the events of bots too (flagged "bot": true); left out by default.'
    )


class FunnelPeopleQuery(FunnelQuery):
    step: int = Field(ge=1, le=20, description="The step, numbered from 1.")
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=4096)


class FunnelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    steps: Steps
    source: SourceId | None = None


class FunnelPatch(BaseModel):
    """What ``PATCH /api/funnels/{id}`` may change; ``"source": null`` lifts the source limit."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    steps: Steps | None = None
    source: SourceId | None = None


def check_definition(definition: MetricDefinition) -> None:
    """What one field alone cannot say: the fields a type needs."""
    needs_second = definition.type in ("conversion_rate", "average_time_between")
    if needs_second and definition.second_event is None:
        raise ValidationFailed.field(("body", "second_event"), f"required for type {definition.type}")
    needs_property = definition.type in ("property_total", "property_average")
    if needs_property and definition.property is None:
        raise ValidationFailed.field(("body", "property"), f"required for type {definition.type}")


def make_window(first: date, last: date, zone_name: str, where: str) -> analytics.Window:
    if last < first:
        raise ValidationFailed.field((where, "to"), "must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailed.field((where, "to"), f"a range is at most {MAX_DAYS} days")
    try:
        return analytics.window(first, last, ZoneInfo(zone_name))
    except (OverflowError, ValueError):
        raise ValidationFailed.field((where, "from"), "out of range") from None


def spec_of(definition: MetricDefinition) -> analytics.MetricSpec:
    return analytics.MetricSpec(
        type=definition.type,
        event=definition.event,
        second_event=definition.second_event,
        property=definition.property,
        where=tuple((c.property, c.value) for c in definition.where),
        repeatable=definition.repeatable,
        per=definition.per,
        source=definition.source,
        include_bots=definition.include_bots,
    )


async def _run_metric(
    services: Services, definition: MetricDefinition, win: analytics.Window
) -> dict[str, Any]:
    async with services.uow.read() as db:
        return await analytics.metric(db, spec_of(definition), win, services.uow.dialect)


def _validate_steps(steps: list[str], step: int | None, where: str = "body") -> None:
    if step is not None and step > len(steps):
        raise ValidationFailed.field((where, "step"), f"the funnel has {len(steps)} steps")


# -------------------------------------------------------------------------------------- metrics


@router.post("/metrics/query")
async def query_metric(body: MetricQuery, services: Services) -> Response:
    """A metric over ``from``..``to``: each day's value, the whole range's, daily max/min/average."""
    check_definition(body)
    win = make_window(body.from_, body.to, body.timezone, "body")
    return json_response(await _run_metric(services, body, win))


def _metric_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        **row.definition,
        "created_at": row.created_at.isoformat(),
    }


@router.post("/metrics", status_code=201)
async def create_metric(body: MetricCreate, services: Services) -> Response:
    """Save a metric: a name and the body of a query, without dates."""
    check_definition(body)
    row = {
        "id": str(uuid.uuid4()),
        "name": body.name,
        "definition": body.model_dump(mode="json", exclude={"name"}),
        "created_at": datetime.now(UTC),
    }
    async with services.uow.transaction() as db:
        await db.execute(saved_metrics.insert().values(**row))
    return json_response(_metric_view(_Row(row)), status_code=201)


class _Row:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


@router.get("/metrics")
async def list_metrics(services: Services) -> Response:
    async with services.uow.read() as db:
        rows = (
            await db.execute(saved_metrics.select().order_by(saved_metrics.c.created_at, saved_metrics.c.id))
        ).all()
    return json_response({"items": [_metric_view(row) for row in rows]})


def _default_range(first: date | None, last: date | None, zone_name: str) -> tuple[date, date]:
    """``from`` and ``to``, or the last 7 days (today included) in the zone."""
    today = datetime.now(ZoneInfo(zone_name)).date()
    last = last or (today if first is None else min(first + timedelta(days=6), today))
    first = first or last - timedelta(days=6)
    return first, last


QueryTo = Annotated[
    date | None,
    Query(description="Last day, included (default: today)."),
    AfterValidator(lambda v: v if v is None else _day(v)),
]
QueryBots = Annotated[
    bool, Query(description='Count the events of bots too (flagged "bot": true); left out by default.')
]


QueryZone = Annotated[
    str | None, Query(max_length=64), AfterValidator(lambda v: v if v is None else _zone(v))
]


@router.get("/metrics/{metric_id}")
async def get_metric(
    metric_id: PathId,
    services: Services,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: QueryTo = None,
    timezone: QueryZone = None,
) -> Response:
    """A saved metric and its result over ``from``..``to`` (default: the last 7 days)."""
    async with services.uow.read() as db:
        row = (await db.execute(saved_metrics.select().where(saved_metrics.c.id == metric_id))).first()
    if row is None:
        raise NotFound(f"no metric {metric_id!r}")
    definition = MetricDefinition.model_validate(
        {**row.definition, **({"timezone": timezone} if timezone else {})}
    )
    first, last = _checked_range(from_, to, definition.timezone)
    win = make_window(first, last, definition.timezone, "query")
    view = _metric_view(row)
    view["timezone"] = definition.timezone
    return json_response(
        {
            **view,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "result": await _run_metric(services, definition, win),
        }
    )


#: Fields that a ``null`` in a PATCH clears; every other field keeps its value when ``null``.
_CLEARABLE = {"second_event", "property", "source"}


def _patched(stored: dict[str, Any], patch: BaseModel) -> dict[str, Any]:
    """``stored`` with the fields the PATCH body sent; ``null`` clears only a clearable field."""
    sent = patch.model_dump(mode="json", exclude_unset=True, exclude={"name"})
    changes = {key: value for key, value in sent.items() if value is not None or key in _CLEARABLE}
    return {**stored, **changes}


@router.patch("/metrics/{metric_id}")
async def update_metric(metric_id: PathId, body: MetricPatch, services: Services) -> Response:
    """Rename a saved metric or change its definition; the whole result is checked as on create."""
    async with services.uow.transaction() as db:
        row = (
            await db.execute(saved_metrics.select().where(saved_metrics.c.id == metric_id).with_for_update())
        ).first()
        if row is None:
            raise NotFound(f"no metric {metric_id!r}")
        try:
            definition = MetricDefinition.model_validate(_patched(row.definition, body))
        except ValueError as exc:  # pydantic's ValidationError: the stored half no longer valid
            raise ValidationFailed.field(("body",), f"the patched metric is not valid: {exc}") from None
        check_definition(definition)
        values = {"definition": definition.model_dump(mode="json")}
        if body.name is not None:
            values["name"] = body.name
        await db.execute(saved_metrics.update().where(saved_metrics.c.id == metric_id).values(**values))
        row = (await db.execute(saved_metrics.select().where(saved_metrics.c.id == metric_id))).one()
    return json_response(_metric_view(row))


@router.delete("/metrics/{metric_id}", status_code=204)
async def delete_metric(metric_id: PathId, services: Services) -> Response:
    async with services.uow.transaction() as db:
        deleted = (await db.execute(saved_metrics.delete().where(saved_metrics.c.id == metric_id))).rowcount
    if not deleted:
        raise NotFound(f"no metric {metric_id!r}")
    return Response(status_code=204)


# -------------------------------------------------------------------------------------- funnels


async def _run_funnel(
    services: Services,
    steps: list[str],
    win: analytics.Window,
    source: str | None,
    include_bots: bool = False,
) -> dict[str, Any]:
    async with services.uow.read() as db:
        return {
            "steps": await analytics.funnel(
                db, steps, win, services.uow.dialect, source=source, include_bots=include_bots
            )
        }


async def _run_people(
    services: Services,
    steps: list[str],
    win: analytics.Window,
    *,
    source: str | None,
    step: int,
    limit: int,
    cursor: str | None,
    where: str,
    include_bots: bool = False,
) -> dict[str, Any]:
    _validate_steps(steps, step, where)
    after = None
    if cursor:
        try:
            after = analytics.decode_people_cursor(cursor)
        except ValueError:
            raise ValidationFailed.field((where, "cursor"), "invalid cursor") from None
    async with services.uow.read() as db:
        items, next_cursor = await analytics.funnel_people(
            db, steps, win, step=step, source=source, limit=limit, after=after, include_bots=include_bots
        )
    return {"step": step, "event": steps[step - 1], "items": items, "next_cursor": next_cursor}


@router.post("/funnels/query")
async def query_funnel(body: FunnelQuery, services: Services) -> Response:
    """Each step's people (loose order), conversions, and the median time from the previous step."""
    win = make_window(body.from_, body.to, body.timezone, "body")
    return json_response(await _run_funnel(services, body.steps, win, body.source, body.include_bots))


@router.post("/funnels/query/people")
async def query_funnel_people(body: FunnelPeopleQuery, services: Services) -> Response:
    """The people who reached step ``step`` (from 1): profile id, email trait, last event time."""
    win = make_window(body.from_, body.to, body.timezone, "body")
    return json_response(
        await _run_people(
            services,
            body.steps,
            win,
            source=body.source,
            step=body.step,
            limit=body.limit,
            cursor=body.cursor,
            where="body",
            include_bots=body.include_bots,
        )
    )


def _funnel_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "steps": row.steps,
        "source": row.source,
        "created_at": row.created_at.isoformat(),
    }


@router.post("/funnels", status_code=201)
async def create_funnel(body: FunnelCreate, services: Services) -> Response:
    row = {
        "id": str(uuid.uuid4()),
        "name": body.name,
        "steps": body.steps,
        "source": body.source,
        "created_at": datetime.now(UTC),
    }
    async with services.uow.transaction() as db:
        await db.execute(saved_funnels.insert().values(**row))
    return json_response(_funnel_view(_Row(row)), status_code=201)


@router.get("/funnels")
async def list_funnels(services: Services) -> Response:
    async with services.uow.read() as db:
        rows = (
            await db.execute(saved_funnels.select().order_by(saved_funnels.c.created_at, saved_funnels.c.id))
        ).all()
    return json_response({"items": [_funnel_view(row) for row in rows]})


async def _saved_funnel(services: Services, funnel_id: str) -> Any:
    async with services.uow.read() as db:
        row = (await db.execute(saved_funnels.select().where(saved_funnels.c.id == funnel_id))).first()
    if row is None:
        raise NotFound(f"no funnel {funnel_id!r}")
    return row


@router.get("/funnels/{funnel_id}")
async def get_funnel(
    funnel_id: PathId,
    services: Services,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: QueryTo = None,
    timezone: QueryZone = None,
    include_bots: QueryBots = False,
) -> Response:
    """A saved funnel and its result over ``from``..``to`` (default: the last 7 days)."""
    row = await _saved_funnel(services, funnel_id)
    zone = timezone or "UTC"
    first, last = _checked_range(from_, to, zone)
    win = make_window(first, last, zone, "query")
    result = await _run_funnel(services, row.steps, win, row.source, include_bots)
    return json_response(
        {**_funnel_view(row), "from": first.isoformat(), "to": last.isoformat(), "timezone": zone, **result}
    )


def _checked_range(first: date | None, last: date | None, zone: str) -> tuple[date, date]:
    if first is not None:
        try:
            _day(first)
        except ValueError as exc:
            raise ValidationFailed.field(("query", "from"), str(exc)) from None
    return _default_range(first, last, zone)


@router.get("/funnels/{funnel_id}/people")
async def get_funnel_people(
    funnel_id: PathId,
    services: Services,
    step: Annotated[int, Query(ge=1, le=20, description="The step, numbered from 1.")],
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: QueryTo = None,
    timezone: QueryZone = None,
    limit: Limit = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    include_bots: QueryBots = False,
) -> Response:
    row = await _saved_funnel(services, funnel_id)
    zone = timezone or "UTC"
    first, last = _checked_range(from_, to, zone)
    win = make_window(first, last, zone, "query")
    return json_response(
        await _run_people(
            services,
            row.steps,
            win,
            source=row.source,
            step=step,
            limit=limit,
            cursor=cursor,
            where="query",
            include_bots=include_bots,
        )
    )


@router.patch("/funnels/{funnel_id}")
async def update_funnel(funnel_id: PathId, body: FunnelPatch, services: Services) -> Response:
    """Rename a saved funnel, change its steps, or its source (``null``: every source)."""
    values = _patched({}, body)
    if body.name is not None:
        values["name"] = body.name
    async with services.uow.transaction() as db:
        if values:
            changed = await db.execute(
                saved_funnels.update().where(saved_funnels.c.id == funnel_id).values(**values)
            )
            if not changed.rowcount:
                raise NotFound(f"no funnel {funnel_id!r}")
        row = (await db.execute(saved_funnels.select().where(saved_funnels.c.id == funnel_id))).first()
    if row is None:
        raise NotFound(f"no funnel {funnel_id!r}")
    return json_response(_funnel_view(row))


@router.delete("/funnels/{funnel_id}", status_code=204)
async def delete_funnel(funnel_id: PathId, services: Services) -> Response:
    async with services.uow.transaction() as db:
        deleted = (await db.execute(saved_funnels.delete().where(saved_funnels.c.id == funnel_id))).rowcount
    if not deleted:
        raise NotFound(f"no funnel {funnel_id!r}")
    return Response(status_code=204)
