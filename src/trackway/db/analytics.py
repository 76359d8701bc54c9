"""Metrics and funnels over ``events``: per person first, then aggregated.

Every query starts from the events of one type in a time range (``ix_events_type_time``),
reduces them to one row per person (or per person and day) in SQL, and only then counts:
nothing loads events into Python, and each per-person step could run where a distributed
PostgreSQL keeps that person's rows (they are all keyed by ``profile_id``). Merged
profiles never count: their events moved to the survivor, and the per-person rows are
joined with the live profiles (``merged_into IS NULL``) before anything is counted.

Days are calendar days in a time zone. SQLite knows no zones, so the zone's UTC offsets over
the range are worked out here (``Window.segments``: each stretch of one offset) and each
event's local date is its UTC time plus the offset of its stretch, the same SQL shape on both
databases. The zone is Python's (``zoneinfo``), never the database's.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    DateTime,
    Float,
    Numeric,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from trackway.db.base import UTCDateTime
from trackway.db.models import events, profiles

MetricType = Literal[
    "people_who_did",
    "times_happened",
    "average_per_person",
    "conversion_rate",
    "average_time_between",
    "property_total",
    "property_average",
]
#: Metrics whose day without events is 0; the others (ratios, averages) are ``None`` then.
COUNT_TYPES = frozenset({"people_who_did", "times_happened", "property_total"})


@dataclass(frozen=True, slots=True)
class Window:
    """The calendar days ``first``..``last`` of a zone, as the UTC instants ``[lo, hi)``."""

    first: date
    last: date
    lo: datetime
    hi: datetime
    #: ``(start, offset seconds)``, ascending: from ``start`` on, local time is UTC + offset.
    segments: tuple[tuple[datetime, int], ...]

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def _offset(instant: datetime, zone: ZoneInfo) -> int:
    delta = instant.astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def window(first: date, last: date, zone: ZoneInfo) -> Window:
    """The UTC bounds of the local days ``first``..``last`` and the zone's offsets in between.

    Raises ``OverflowError`` for dates at the ends of the calendar.
    """
    lo = datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)
    hi = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    segments = [(lo, _offset(lo, zone))]
    step = timedelta(hours=1)
    at = lo
    while at < hi:
        nxt = min(at + step, hi)
        if nxt < hi and _offset(nxt, zone) != segments[-1][1]:
            # The change is in (at, nxt]: find its second (zones change on whole minutes).
            before, after = at, nxt
            while after - before > timedelta(seconds=1):
                middle = before + (after - before) / 2
                if _offset(middle, zone) == segments[-1][1]:
                    before = middle
                else:
                    after = middle
            after = after.replace(microsecond=0)
            segments.append((after, _offset(after, zone)))
        at = nxt
    return Window(first, last, lo, hi, tuple(segments))


def _t(value: datetime) -> ColumnElement[Any]:
    """A time parameter stored the way the column stores it (naive UTC text on SQLite)."""
    return literal(value, UTCDateTime())


def _local_day(column: Any, win: Window, dialect: str) -> ColumnElement[Any]:
    """The local calendar date of a UTC time column: UTC plus the offset of its stretch."""

    def shifted(offset: int) -> ColumnElement[Any]:
        if dialect == "sqlite":
            return func.date(column, f"{offset:+d} seconds")
        # timezone('UTC', timestamptz) is the UTC wall time, whatever the session's zone.
        moved = func.timezone("UTC", column) + literal_column(f"interval '{offset:d} seconds'")
        return func.date(moved)

    if len(win.segments) == 1:
        return shifted(win.segments[0][1])
    whens = [
        (column < _t(start), shifted(prev))
        for (_, prev), (start, _) in zip(win.segments, win.segments[1:], strict=False)
    ]
    return case(*whens, else_=shifted(win.segments[-1][1]))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    """Seconds since 1970 of a time column (or of ``MIN`` of one), as a float."""
    if dialect == "sqlite":
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(func.extract("epoch", column), Float)


def _sqlite_path(name: str) -> str:
    return '$."' + name + '"'


def _property_number(name: str, dialect: str) -> ColumnElement[Any]:
    """An event property's value when it is a JSON number, else NULL (strings do not count)."""
    if dialect == "sqlite":
        path = _sqlite_path(name)
        return case(
            (
                func.json_type(events.c.properties, path).in_(("integer", "real")),
                func.json_extract(events.c.properties, path),
            ),
            else_=None,
        )
    value = events.c.properties.op("->")(literal(name, String))
    return case(
        (
            func.jsonb_typeof(value) == "number",
            cast(events.c.properties.op("->>")(literal(name, String)), Numeric),
        ),
        else_=None,
    )


def _property_equals(name: str, value: Any, dialect: str) -> ColumnElement[bool]:
    """``properties[name] == value`` for a JSON scalar, the same answer on both databases."""
    if dialect != "sqlite":
        return events.c.properties.op("->")(literal(name, String)) == cast(
            literal(orjson.dumps(value).decode(), String), JSONB
        )
    path = _sqlite_path(name)
    kind = func.json_type(events.c.properties, path)
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    extracted = func.json_extract(events.c.properties, path)
    if isinstance(value, int | float):
        return and_(kind.in_(("integer", "real")), extracted == value)
    return and_(kind == "text", extracted == value)


def not_bot(table: Any = events) -> ColumnElement[bool]:
    """An event no bot sent (``core/bots.py`` flags them): the ``bot`` column, which
    ``ix_events_type_time`` holds, so the question is answered from the index."""
    return table.c.bot == false()  # type: ignore[no-any-return]


def _typed_events(
    event_type: str,
    win: Window,
    *,
    source: str | None,
    where: list[tuple[str, Any]] | None = None,
    dialect: str,
    include_bots: bool = False,
) -> list[ColumnElement[bool]]:
    conditions = [
        events.c.type == event_type,
        events.c.time >= _t(win.lo),
        events.c.time < _t(win.hi),
        events.c.profile_id.is_not(None),
    ]
    if source is not None:
        conditions.append(events.c.source_id == source)
    if not include_bots:
        conditions.append(not_bot())
    for name, value in where or ():
        conditions.append(_property_equals(name, value, dialect))
    return conditions


async def analytic_session(db: AsyncConnection) -> None:
    """Settings for one read-side question, for the rest of its transaction (PostgreSQL).

    JIT compilation is off: these queries are large but short, and compiling their expressions
    took longer (2-3 s on a 30-day metric) than running them; merge joins are off (below).
    ``work_mem`` is raised so that
    grouping a month of events by person and day (a few hundred thousand groups) stays in
    memory instead of spilling to disk in dozens of batches; it is per sort or hash of this one
    query, on the admin's connection only.
    """
    if db.dialect.name == "postgresql":
        await db.exec_driver_sql("SET LOCAL jit = off")
        await db.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        # The planner guesses a per-person step (GROUP BY profile_id) at a tenth of its rows or
        # less, and then sorts a month of events for a merge join; hash joins do not sort.
        await db.exec_driver_sql("SET LOCAL enable_mergejoin = off")


def _live(profile_id: Any) -> Any:
    """The join condition that keeps live profiles only."""
    return and_(profiles.c.id == profile_id, profiles.c.merged_into.is_(None))


# ------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True, slots=True)
class MetricSpec:
    type: str
    event: str
    second_event: str | None = None
    property: str | None = None
    where: tuple[tuple[str, Any], ...] = ()
    repeatable: bool = False
    per: str = "times"
    source: str | None = None
    #: Count bots' events too (``core/bots.py``); by default they are left out.
    include_bots: bool = False


def _num(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _ratio(top: Any, bottom: Any) -> float | None:
    if top is None or not bottom:
        return None
    return float(top) / float(bottom)


async def metric(db: AsyncConnection, spec: MetricSpec, win: Window, dialect: str) -> dict[str, Any]:
    """``{"series", "value", "daily", "people"}`` of one metric over the window's days."""
    await analytic_session(db)
    by_day, overall, people = await _metric_values(db, spec, win, dialect)
    empty: float | int | None = 0 if spec.type in COUNT_TYPES else None
    series = [{"date": day.isoformat(), "value": by_day.get(day, empty)} for day in win.days]
    values = [point["value"] for point in series if point["value"] is not None]
    daily = {
        "max": max(values) if values else None,
        "min": min(values) if values else None,
        "average": sum(values) / len(values) if values else None,
    }
    return {"series": series, "value": overall, "daily": daily, "people": people}


async def _metric_values(
    db: AsyncConnection, spec: MetricSpec, win: Window, dialect: str
) -> tuple[dict[date, Any], Any, int]:
    """The value of each day that has one, the value over the whole range, the people."""
    conditions = _typed_events(
        spec.event,
        win,
        source=spec.source,
        where=list(spec.where),
        dialect=dialect,
        include_bots=spec.include_bots,
    )
    value = _property_number(spec.property, dialect) if spec.property else cast(null(), Numeric)
    # The matching events with their local day, in a subquery: PostgreSQL would not see the
    # day expression of a GROUP BY as the selected one (each has parameters of its own).
    base = (
        select(
            events.c.id,
            events.c.profile_id,
            events.c.time,
            _local_day(events.c.time, win, dialect).label("day"),
            value.label("value"),
        )
        .where(*conditions)
        .subquery("base")
    )
    if spec.type in ("conversion_rate", "average_time_between"):
        who = select(base.c.profile_id).group_by(base.c.profile_id).subquery("who")
        people = (
            await db.execute(select(func.count()).select_from(who.join(profiles, _live(who.c.profile_id))))
        ).scalar_one()
        by_day = {
            _as_date(row.day): _sequence_value(spec, row)
            for row in await _sequence(db, spec, win, dialect, base, True)
        }
        whole = await _sequence(db, spec, win, dialect, base, False)
        return by_day, (_sequence_value(spec, whole[0]) if whole else None), int(people)

    # One row per person and day: how often, the property's total and how often it was a number;
    # then, from the same rows in one statement, each day's values and the whole range's.
    per_day = (
        select(
            base.c.profile_id,
            base.c.day,
            func.count().label("times"),
            func.sum(base.c.value).label("total"),
            func.count(base.c.value).label("numbers"),
        )
        .group_by(base.c.profile_id, base.c.day)
        .cte("per_day")
    )
    live = per_day.join(profiles, _live(per_day.c.profile_id))
    sums = (
        func.sum(per_day.c.times).label("times"),
        func.sum(per_day.c.total).label("total"),
        func.sum(per_day.c.numbers).label("numbers"),
    )
    daily = (
        select(literal_column("0").label("whole"), per_day.c.day, func.count().label("people"), *sums)
        .select_from(live)
        .group_by(per_day.c.day)
    )
    # The whole range: one row per person first (a hash, where COUNT(DISTINCT) would sort).
    per_person = (
        select(per_day.c.profile_id, *sums)
        .select_from(live)
        .group_by(per_day.c.profile_id)
        .subquery("per_person")
    )
    whole = select(
        literal_column("1").label("whole"),
        null().label("day"),
        func.count().label("people"),
        func.sum(per_person.c.times).label("times"),
        func.sum(per_person.c.total).label("total"),
        func.sum(per_person.c.numbers).label("numbers"),
    )
    rows = (await db.execute(union_all(daily, whole))).all()
    daily_rows = [row for row in rows if not row.whole]
    whole_row = next(row for row in rows if row.whole)
    everyone = None
    if spec.type == "property_average" and spec.per == "all_people":
        everyone = (
            await db.execute(
                select(func.count()).select_from(profiles).where(profiles.c.merged_into.is_(None))
            )
        ).scalar_one()

    def value_of(row: Any) -> Any:
        if spec.type == "people_who_did":
            return int(row.people or 0)
        if spec.type == "times_happened":
            return int(row.times or 0)
        if spec.type == "average_per_person":
            return _ratio(row.times, row.people)
        if spec.type == "property_total":
            return _num(row.total) or 0.0
        # property_average: over the times the property was a number, the people, or everyone.
        bottom = {"times": row.numbers, "people": row.people, "all_people": everyone}[spec.per]
        return _ratio(row.total or 0, bottom)

    by_day = {_as_date(row.day): value_of(row) for row in daily_rows}
    return by_day, value_of(whole_row), int(whole_row.people or 0)


def _sequence_value(spec: MetricSpec, row: Any) -> Any:
    if spec.type == "conversion_rate":
        return _ratio(row.converted, row.starts)
    return _num(row.seconds)


async def _sequence(
    db: AsyncConnection, spec: MetricSpec, win: Window, dialect: str, base: Any, by_day: bool
) -> list[Any]:
    """``conversion_rate`` and ``average_time_between``: ``event``, then ``second_event`` after it.

    Non-repeatable (the default): one start per person (per person and day for the series),
    their first ``event``; converted when a ``second_event`` follows it before the range
    ends. Repeatable: every ``event`` is a start, converted when a ``second_event`` follows it
    before the person's next ``event``. ``average_time_between`` takes a person's first
    ``event`` and their first ``second_event`` after it, over the people who did both.
    """
    assert spec.second_event is not None
    keys = [base.c.profile_id] + ([base.c.day] if by_day else [])
    if spec.repeatable and spec.type == "conversion_rate":
        # Every event is a start; the person's next one (or the range's end) closes it.
        nxt = func.lead(base.c.time).over(partition_by=base.c.profile_id, order_by=(base.c.time, base.c.id))
        starts = select(
            *keys, base.c.id.label("start_id"), base.c.time.label("start"), nxt.label("next")
        ).subquery("starts")
        until: Any = func.coalesce(starts.c.next, _t(win.hi))
        start_keys = [*(starts.c[k.name] for k in keys), starts.c.start_id, starts.c.start]
    else:
        starts = select(*keys, func.min(base.c.time).label("start")).group_by(*keys).subquery("starts")
        until = _t(win.hi)
        start_keys = [*(starts.c[k.name] for k in keys), starts.c.start]
    later = events.alias("later")
    # A second event of the same type must be another, later one. A join and a GROUP BY rather
    # than a subquery per start: the second events come from one range scan of the type index.
    same = spec.second_event == spec.event
    on = [
        later.c.profile_id == starts.c.profile_id,
        later.c.type == spec.second_event,
        later.c.time > starts.c.start if same else later.c.time >= starts.c.start,
        later.c.time >= _t(win.lo),  # implied by the start; bounds the index range scan
        later.c.time < _t(win.hi),
        later.c.time < until,
    ]
    if spec.source is not None:
        on.append(later.c.source_id == spec.source)
    if not spec.include_bots:
        on.append(not_bot(later))
    day = starts.c.day if by_day else literal_column("0").label("day")
    paired = (
        select(day, starts.c.start, func.min(later.c.time).label("end"))
        .select_from(starts.join(profiles, _live(starts.c.profile_id)).outerjoin(later, and_(*on)))
        .group_by(*start_keys)
        .subquery("paired")
    )
    if spec.type == "conversion_rate":
        measures = [func.count().label("starts"), func.count(paired.c.end).label("converted")]
    else:
        gap = _epoch(paired.c.end, dialect) - _epoch(paired.c.start, dialect)
        measures = [func.avg(gap).label("seconds")]
    stmt = select(paired.c.day, *measures).group_by(paired.c.day)
    return list((await db.execute(stmt)).all())


# ------------------------------------------------------------------------------------ funnels


def _funnel_chain(steps: list[str], win: Window, source: str | None, include_bots: bool = False) -> list[Any]:
    """One CTE per step: each person who reached it, the time they did, and the previous step's.

    Step 1 is the person's first event of its type in the range; step k is the first event
    of its type after the time of step k-1 (loose order: anything may happen in between).
    """
    chain: list[Any] = []
    first_conditions = _typed_events(steps[0], win, source=source, dialect="", include_bots=include_bots)
    first = (
        select(
            events.c.profile_id.label("profile_id"),
            cast(null(), DateTime(timezone=True)).label("prev"),
            func.min(events.c.time).label("at"),
        )
        .where(*first_conditions)
        .group_by(events.c.profile_id)
        .subquery("first_step")
    )
    live_first = (
        select(first.c.profile_id, first.c.prev, first.c.at)
        .select_from(first.join(profiles, _live(first.c.profile_id)))
        .cte("step_1")
    )
    chain.append(live_first)
    for k, event_type in enumerate(steps[1:], start=2):
        previous = chain[-1]
        same = event_type == steps[k - 2]
        after = events.c.time > previous.c.at if same else events.c.time >= previous.c.at
        on = [
            events.c.profile_id == previous.c.profile_id,
            events.c.type == event_type,
            after,
            events.c.time >= _t(win.lo),  # implied by ``after``; bounds an index range scan
            events.c.time < _t(win.hi),
        ]
        if source is not None:
            on.append(events.c.source_id == source)
        if not include_bots:
            on.append(not_bot())
        step = (
            select(
                previous.c.profile_id,
                previous.c.at.label("prev"),
                func.min(events.c.time).label("at"),
            )
            .select_from(previous.join(events, and_(*on)))
            .group_by(previous.c.profile_id, previous.c.at)
            .cte(f"step_{k}")
        )
        chain.append(step)
    return chain


async def funnel(
    db: AsyncConnection,
    steps: list[str],
    win: Window,
    dialect: str,
    *,
    source: str | None,
    include_bots: bool = False,
) -> list[dict[str, Any]]:
    """Each step: the people who reached it, conversions, the median time from the previous step."""
    await analytic_session(db)
    chain = _funnel_chain(steps, win, source, include_bots)
    reached = union_all(
        *(
            select(literal_column(str(k)).label("step"), cte.c.prev, cte.c.at)
            for k, cte in enumerate(chain, start=1)
        )
    ).subquery("reached")
    # People and median gap per step in one statement, so the chain is worked out once. A step's
    # gaps are all set (step 1's all NULL); the median is the middle row, or the mean of the two
    # middle rows (portable, no percentile_cont).
    gap = (_epoch(reached.c.at, dialect) - _epoch(reached.c.prev, dialect)).label("gap")
    ranked = select(
        reached.c.step,
        gap,
        func.row_number().over(partition_by=reached.c.step, order_by=gap).label("rank"),
        func.count().over(partition_by=reached.c.step).label("n"),
    ).subquery("ranked")
    middle = ranked.c.rank.in_(((ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2))
    rows = (
        await db.execute(
            select(
                ranked.c.step,
                func.count().label("people"),
                func.avg(case((middle, ranked.c.gap), else_=None)).label("median"),
            ).group_by(ranked.c.step)
        )
    ).all()
    counts = {int(row.step): row.people for row in rows}
    medians = {int(row.step): row.median for row in rows}
    first_people = int(counts.get(1, 0))
    out: list[dict[str, Any]] = []
    for k, event_type in enumerate(steps, start=1):
        people = int(counts.get(k, 0))
        previous = first_people if k == 1 else int(counts.get(k - 1, 0))
        out.append(
            {
                "event": event_type,
                "people": people,
                "conversion_from_previous": _ratio(people, previous),
                "conversion_from_first": _ratio(people, first_people),
                "median_seconds_from_previous": _num(medians.get(k)),
            }
        )
    return out


def encode_people_cursor(profile_id: str) -> str:
    return base64.urlsafe_b64encode(profile_id.encode()).decode().rstrip("=")


def decode_people_cursor(cursor: str) -> str:
    """The profile id a cursor stands for; ``ValueError`` for one this server did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        profile_id = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if not profile_id or len(profile_id) > 36 or "\x00" in profile_id:
        raise ValueError("invalid cursor")
    return profile_id


async def funnel_people(
    db: AsyncConnection,
    steps: list[str],
    win: Window,
    *,
    step: int,
    source: str | None,
    limit: int,
    after: str | None,
    include_bots: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the people who reached ``step`` (from 1), by profile id, and the next cursor."""
    await analytic_session(db)
    chain = _funnel_chain(steps[:step], win, source, include_bots)
    reached = chain[-1]
    last_event = (
        select(func.max(events.c.time)).where(events.c.profile_id == reached.c.profile_id).scalar_subquery()
    )
    stmt = (
        select(
            reached.c.profile_id,
            profiles.c.traits["email"].as_string().label("email"),
            last_event.label("last_event_at"),
        )
        .select_from(reached.join(profiles, profiles.c.id == reached.c.profile_id))
        .order_by(reached.c.profile_id)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(reached.c.profile_id > after)
    rows = (await db.execute(stmt)).all()
    page = rows[:limit]
    items = [
        {
            "profile_id": row.profile_id,
            "email": row.email,
            "last_event_at": _last_event(row.last_event_at),
        }
        for row in page
    ]
    next_cursor = encode_people_cursor(page[-1].profile_id) if len(rows) > limit else None
    return items, next_cursor


def _last_event(value: Any) -> str | None:
    """``MAX(time)`` comes back untyped: a datetime on PostgreSQL, the stored text on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())
