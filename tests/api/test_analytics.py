"""Metrics and funnels on hand-built histories with explicit event times (issue 15, the read side)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import ADMIN
from trackway.core import sources as source_service
from trackway.core.batch import EventIn, IdentityRef, IngestBatch, RequestMeta, SourceRef, TraitsPatch
from trackway.core.ingest import ingest
from trackway.core.merge import merge_profiles

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
STEPS = ["A", "B", "C", "D"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def person(
    uow, key: str, history: list[tuple[Any, ...]], email: str | None = None, source: str = SOURCE
) -> str:
    """A person ``key`` who did each ``(type, "YYYY-MM-DD HH:MM[:SS]"[, properties])`` of ``history``."""
    batch = IngestBatch(
        source=SourceRef(source, "tracardi"),
        meta=RequestMeta(received_at=datetime.now(UTC)),
        identities=[IdentityRef("person", key, scope=source)],
        events=[
            EventIn(type=item[0], time=at(item[1]), properties=item[2] if len(item) > 2 else {})
            for item in history
        ],
        traits=TraitsPatch(set={"email": email} if email else {}),
    )
    return (await ingest(batch, uow)).profile_id


async def metric(client, **body: Any) -> dict[str, Any]:
    body.setdefault("from", "2024-03-01")
    body.setdefault("to", "2024-03-03")
    response = await client.post("/api/metrics/query", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def funnel(client, steps: list[str] = STEPS, **body: Any) -> list[dict[str, Any]]:
    body = {"steps": steps, "from": "2024-03-01", "to": "2024-03-03", **body}
    response = await client.post("/api/funnels/query", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["steps"]


def series(result: dict[str, Any]) -> dict[str, Any]:
    return {point["date"]: point["value"] for point in result["series"]}


# ------------------------------------------------------------------------------------ funnels


async def test_the_seeds_three_funnel_cases(client, uow, tracardi_source) -> None:
    # 1. A->B->C->D in this exact order: a full conversion.
    await person(
        uow,
        "exact",
        [
            ("A", "2024-03-01 10:00"),
            ("B", "2024-03-01 10:01"),
            ("C", "2024-03-01 10:02"),
            ("D", "2024-03-01 10:03"),
        ],
    )
    # 2. A->B->C->E->D: loose ordering, a conversion too.
    await person(
        uow,
        "loose",
        [
            ("A", "2024-03-01 10:00"),
            ("B", "2024-03-01 10:02"),
            ("C", "2024-03-01 10:04"),
            ("E", "2024-03-01 10:05"),
            ("D", "2024-03-01 10:06"),
        ],
    )
    # 3. A->B->D: not a conversion, shown up to B only.
    await person(
        uow, "short", [("A", "2024-03-01 10:00"), ("B", "2024-03-01 10:10"), ("D", "2024-03-01 10:20")]
    )
    # Steps before the start do not count: D, C, B before A.
    await person(
        uow,
        "backwards",
        [
            ("D", "2024-03-01 09:00"),
            ("C", "2024-03-01 09:01"),
            ("B", "2024-03-01 09:02"),
            ("A", "2024-03-01 09:03"),
        ],
    )

    steps = await funnel(client)
    assert [s["event"] for s in steps] == STEPS
    assert [s["people"] for s in steps] == [4, 3, 2, 2]
    assert steps[0]["conversion_from_previous"] == 1.0
    assert steps[1]["conversion_from_previous"] == pytest.approx(0.75)
    assert steps[2]["conversion_from_previous"] == pytest.approx(2 / 3)
    assert steps[3]["conversion_from_previous"] == 1.0
    assert steps[3]["conversion_from_first"] == pytest.approx(0.5)
    # Median seconds from the previous step: B after A took 60, 120 and 600 seconds.
    assert steps[0]["median_seconds_from_previous"] is None
    assert steps[1]["median_seconds_from_previous"] == pytest.approx(120)
    # C after B: 60 and 120: the mean of the two middle values.
    assert steps[2]["median_seconds_from_previous"] == pytest.approx(90)
    assert steps[3]["median_seconds_from_previous"] == pytest.approx(90)


async def test_funnel_steps_follow_the_first_occurrence_after_the_start(client, uow, tracardi_source) -> None:
    # B before A does not count; the B after the first A does, and C after that B.
    await person(
        uow,
        "p",
        [
            ("B", "2024-03-01 08:00"),
            ("A", "2024-03-01 09:00"),
            ("A", "2024-03-01 11:00"),
            ("B", "2024-03-01 10:00"),
            ("C", "2024-03-01 10:30"),
        ],
    )
    steps = await funnel(client, ["A", "B", "C"])
    assert [s["people"] for s in steps] == [1, 1, 1]
    assert steps[1]["median_seconds_from_previous"] == pytest.approx(3600)
    # A step repeating the previous one needs another, later event.
    assert [s["people"] for s in await funnel(client, ["A", "A"])] == [1, 1]
    assert [s["people"] for s in await funnel(client, ["C", "C"])] == [1, 0]
    # Outside the range, nothing.
    assert [s["people"] for s in await funnel(client, ["A", "B"], **{"from": "2024-03-02"})] == [0, 0]


async def test_funnel_people_are_paginated(client, uow, tracardi_source) -> None:
    ids = []
    for i in range(5):
        history = (
            [("A", f"2024-03-01 10:0{i}"), ("B", f"2024-03-02 10:0{i}")]
            if i % 2 == 0
            else [("A", f"2024-03-01 10:0{i}")]
        )
        ids.append(await person(uow, f"p{i}", history, email=f"p{i}@example.com"))
    body = {"steps": ["A", "B"], "from": "2024-03-01", "to": "2024-03-03", "step": 2, "limit": 2}
    seen: list[dict[str, Any]] = []
    for _ in range(5):
        page = (await client.post("/api/funnels/query/people", json=body, headers=ADMIN)).json()
        assert page["event"] == "B"
        seen.extend(page["items"])
        if page["next_cursor"] is None:
            break
        body["cursor"] = page["next_cursor"]
    reached = sorted(ids[i] for i in (0, 2, 4))
    assert [item["profile_id"] for item in seen] == reached
    by_id = {item["profile_id"]: item for item in seen}
    assert by_id[ids[2]]["email"] == "p2@example.com"
    assert by_id[ids[2]]["last_event_at"] == "2024-03-02T10:02:00+00:00"

    first = (
        await client.post(
            "/api/funnels/query/people", json={**body, "step": 1, "limit": 100, "cursor": None}, headers=ADMIN
        )
    ).json()
    assert len(first["items"]) == 5


async def test_saved_funnel(client, uow, tracardi_source) -> None:
    await person(uow, "p", [("A", "2024-03-01 10:00"), ("B", "2024-03-01 10:05")], email="p@example.com")
    created = await client.post(
        "/api/funnels", json={"name": "Signup", "steps": ["A", "B", "C"]}, headers=ADMIN
    )
    assert created.status_code == 201
    funnel_id = created.json()["id"]
    listed = (await client.get("/api/funnels", headers=ADMIN)).json()["items"]
    assert [f["id"] for f in listed] == [funnel_id]
    got = (
        await client.get(
            f"/api/funnels/{funnel_id}", params={"from": "2024-03-01", "to": "2024-03-01"}, headers=ADMIN
        )
    ).json()
    assert got["name"] == "Signup"
    assert [s["people"] for s in got["steps"]] == [1, 1, 0]
    people = await client.get(
        f"/api/funnels/{funnel_id}/people",
        params={"step": 2, "from": "2024-03-01", "to": "2024-03-01"},
        headers=ADMIN,
    )
    assert [p["email"] for p in people.json()["items"]] == ["p@example.com"]
    too_far = await client.get(f"/api/funnels/{funnel_id}/people", params={"step": 4}, headers=ADMIN)
    assert too_far.status_code == 422
    assert too_far.json()["detail"][0]["loc"] == ["query", "step"]
    assert (await client.delete(f"/api/funnels/{funnel_id}", headers=ADMIN)).status_code == 204
    assert (await client.get(f"/api/funnels/{funnel_id}", headers=ADMIN)).status_code == 404
    assert (await client.delete(f"/api/funnels/{funnel_id}", headers=ADMIN)).status_code == 404


# ------------------------------------------------------------------------------------ metrics


async def test_people_and_times_once_per_day(client, uow, tracardi_source) -> None:
    # Twice on one day: once among the day's people, twice in times_happened.
    await person(
        uow,
        "ann",
        [("Visit", "2024-03-01 09:00"), ("Visit", "2024-03-01 18:00"), ("Visit", "2024-03-03 12:00")],
    )
    await person(uow, "bob", [("Visit", "2024-03-01 10:00"), ("Other", "2024-03-02 10:00")])

    people = await metric(client, type="people_who_did", event="Visit")
    assert series(people) == {"2024-03-01": 2, "2024-03-02": 0, "2024-03-03": 1}
    assert people["value"] == 2  # once over the range
    assert people["people"] == 2
    assert people["daily"] == {"max": 2, "min": 0, "average": pytest.approx(1)}

    times = await metric(client, type="times_happened", event="Visit")
    assert series(times) == {"2024-03-01": 3, "2024-03-02": 0, "2024-03-03": 1}
    assert times["value"] == 4

    average = await metric(client, type="average_per_person", event="Visit")
    assert series(average) == {"2024-03-01": pytest.approx(1.5), "2024-03-02": None, "2024-03-03": 1.0}
    assert average["value"] == pytest.approx(2.0)
    assert average["daily"] == {"max": 1.5, "min": 1.0, "average": pytest.approx(1.25)}


async def test_days_are_calendar_days_in_the_time_zone(client, uow, tracardi_source) -> None:
    # 23:30 UTC on 1 March is 00:30 on 2 March in Berlin (UTC+1 in winter).
    await person(uow, "late", [("Visit", "2024-03-01 23:30")])
    utc = await metric(client, type="times_happened", event="Visit")
    assert series(utc) == {"2024-03-01": 1, "2024-03-02": 0, "2024-03-03": 0}
    berlin = await metric(client, type="times_happened", event="Visit", timezone="Europe/Berlin")
    assert series(berlin) == {"2024-03-01": 0, "2024-03-02": 1, "2024-03-03": 0}
    # The range's edges are local midnights: Berlin's 2 March alone still holds it.
    only = await metric(
        client,
        type="times_happened",
        event="Visit",
        timezone="Europe/Berlin",
        **{"from": "2024-03-02", "to": "2024-03-02"},
    )
    assert only["value"] == 1


async def test_days_across_a_daylight_saving_change(client, uow, tracardi_source) -> None:
    # Berlin moved to UTC+2 at 01:00 UTC on 31 March 2024.
    await person(
        uow,
        "p",
        [("Visit", "2024-03-30 23:30"), ("Visit", "2024-03-31 22:30"), ("Visit", "2024-03-31 21:30")],
    )
    result = await metric(
        client,
        type="times_happened",
        event="Visit",
        timezone="Europe/Berlin",
        **{"from": "2024-03-30", "to": "2024-04-01"},
    )
    # 00:30 on 31 March (UTC+1), 00:30 on 1 April (UTC+2), 23:30 on 31 March (UTC+2).
    assert series(result) == {"2024-03-30": 0, "2024-03-31": 2, "2024-04-01": 1}


async def test_an_empty_range(client, tracardi_source) -> None:
    for kind, empty in (("people_who_did", 0), ("times_happened", 0), ("property_total", 0.0)):
        result = await metric(client, type=kind, event="Visit", property="amount")
        assert [p["value"] for p in result["series"]] == [empty] * 3
        assert result["value"] == empty
        assert result["people"] == 0
        assert result["daily"] == {"max": empty, "min": empty, "average": empty}
    for kind in ("average_per_person", "conversion_rate", "average_time_between", "property_average"):
        result = await metric(client, type=kind, event="Visit", second_event="Buy", property="amount")
        assert [p["value"] for p in result["series"]] == [None] * 3
        assert result["value"] is None
        assert result["daily"] == {"max": None, "min": None, "average": None}
    steps = await funnel(client)
    assert [s["people"] for s in steps] == [0, 0, 0, 0]
    assert steps[0]["conversion_from_previous"] is None


async def test_a_merged_person_is_counted_once(client, uow, tracardi_source) -> None:
    a = await person(uow, "a", [("Visit", "2024-03-01 10:00"), ("Signup", "2024-03-01 10:05")])
    b = await person(uow, "b", [("Visit", "2024-03-01 11:00"), ("Visit", "2024-03-02 11:00")])
    async with uow.transaction() as db:
        await merge_profiles(db, from_id=a, into_id=b, reason="test", source_id=SOURCE, now=datetime.now(UTC))
    result = await metric(client, type="people_who_did", event="Visit")
    assert series(result) == {"2024-03-01": 1, "2024-03-02": 1, "2024-03-03": 0}
    assert result["value"] == 1
    steps = await funnel(client, ["Visit", "Signup"])
    assert [s["people"] for s in steps] == [1, 1]


async def test_conversion_rate_and_time_between(client, uow, tracardi_source) -> None:
    await person(
        uow,
        "fast",
        [("Visit", "2024-03-01 10:00"), ("Buy", "2024-03-01 10:10"), ("Visit", "2024-03-02 10:00")],
    )
    await person(
        uow, "slow", [("Visit", "2024-03-01 12:00"), ("Buy", "2024-03-02 12:00"), ("Buy", "2024-03-03 12:00")]
    )
    await person(uow, "never", [("Visit", "2024-03-02 09:00")])
    await person(uow, "before", [("Buy", "2024-03-01 08:00"), ("Visit", "2024-03-01 09:00")])

    rate = await metric(client, type="conversion_rate", event="Visit", second_event="Buy")
    assert rate["value"] == pytest.approx(2 / 4)
    assert rate["people"] == 4
    # 1 March: fast, slow and before start; fast and slow buy later. 2 March: fast (no Buy
    # after its 2 March visit), never; 3 March: nobody visits.
    assert series(rate) == {"2024-03-01": pytest.approx(2 / 3), "2024-03-02": 0.0, "2024-03-03": None}

    # Repeatable: every Visit is a start, converted by a Buy before the person's next Visit.
    repeat = await metric(client, type="conversion_rate", event="Visit", second_event="Buy", repeatable=True)
    assert repeat["value"] == pytest.approx(2 / 5)

    between = await metric(client, type="average_time_between", event="Visit", second_event="Buy")
    assert between["value"] == pytest.approx((600 + 86400) / 2)
    assert series(between) == {
        "2024-03-01": pytest.approx((600 + 86400) / 2),
        "2024-03-02": None,
        "2024-03-03": None,
    }


async def test_property_total_and_average(client, uow, tracardi_source) -> None:
    await person(
        uow,
        "ann",
        [
            ("Buy", "2024-03-01 10:00", {"amount": 10, "plan": "gold"}),
            ("Buy", "2024-03-02 10:00", {"amount": 5.5, "plan": "free"}),
        ],
    )
    await person(
        uow,
        "bob",
        [
            ("Buy", "2024-03-01 11:00", {"amount": 20, "plan": "gold"}),
            ("Buy", "2024-03-01 12:00", {"amount": "n/a", "plan": "gold"}),
        ],
    )
    await person(uow, "cid", [("Visit", "2024-03-01 11:00")])

    total = await metric(client, type="property_total", event="Buy", property="amount")
    assert total["value"] == pytest.approx(35.5)
    assert series(total) == {"2024-03-01": 30.0, "2024-03-02": 5.5, "2024-03-03": 0.0}
    gold = await metric(
        client,
        type="property_total",
        event="Buy",
        property="amount",
        where=[{"property": "plan", "op": "eq", "value": "gold"}],
    )
    assert gold["value"] == pytest.approx(30)
    assert gold["people"] == 2

    per_time = await metric(client, type="property_average", event="Buy", property="amount")
    assert per_time["value"] == pytest.approx(35.5 / 3)  # the string amount is not a number
    per_person = await metric(client, type="property_average", event="Buy", property="amount", per="people")
    assert per_person["value"] == pytest.approx(35.5 / 2)
    everyone = await metric(client, type="property_average", event="Buy", property="amount", per="all_people")
    assert everyone["value"] == pytest.approx(35.5 / 3)
    assert series(per_time)["2024-03-03"] is None


async def test_where_compares_json_scalars_exactly(client, uow, tracardi_source) -> None:
    await person(
        uow,
        "p",
        [
            ("E", "2024-03-01 10:00", {"n": 1, "s": "1", "b": True, "z": None}),
            ("E", "2024-03-01 11:00", {"n": "1", "s": 1, "b": 1}),
        ],
    )
    for condition, expected in (
        ({"property": "n", "value": 1}, 1),
        ({"property": "n", "value": "1"}, 1),
        ({"property": "s", "value": "1"}, 1),
        ({"property": "b", "value": True}, 1),
        ({"property": "b", "value": 1}, 1),
        ({"property": "z", "value": None}, 1),
        ({"property": "missing", "value": "x"}, 0),
    ):
        result = await metric(client, type="times_happened", event="E", where=[condition])
        assert result["value"] == expected, condition


async def test_saved_metric(client, uow, tracardi_source) -> None:
    await person(uow, "p", [("Visit", "2024-03-01 23:30")])
    created = await client.post(
        "/api/metrics",
        json={"name": "Site visits", "type": "people_who_did", "event": "Visit", "timezone": "Europe/Berlin"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    metric_id = created.json()["id"]
    assert [m["name"] for m in (await client.get("/api/metrics", headers=ADMIN)).json()["items"]] == [
        "Site visits"
    ]
    got = (
        await client.get(
            f"/api/metrics/{metric_id}", params={"from": "2024-03-01", "to": "2024-03-02"}, headers=ADMIN
        )
    ).json()
    assert got["type"] == "people_who_did"
    assert series(got["result"]) == {"2024-03-01": 0, "2024-03-02": 1}
    utc = (
        await client.get(
            f"/api/metrics/{metric_id}",
            params={"from": "2024-03-01", "to": "2024-03-02", "timezone": "UTC"},
            headers=ADMIN,
        )
    ).json()
    assert series(utc["result"]) == {"2024-03-01": 1, "2024-03-02": 0}
    default = (await client.get(f"/api/metrics/{metric_id}", headers=ADMIN)).json()
    assert len(default["result"]["series"]) == 7
    assert (await client.delete(f"/api/metrics/{metric_id}", headers=ADMIN)).status_code == 204
    assert (await client.get(f"/api/metrics/{metric_id}", headers=ADMIN)).status_code == 404


async def test_source_and_time_zone_narrow_funnels_and_metrics(client, uow, tracardi_source) -> None:
    await source_service.create_source(uow, name="app", dialect="tracardi", source_id="app")
    # 23:30 UTC on 29 February is 1 March in Berlin.
    await person(uow, "web", [("A", "2024-02-29 23:30"), ("B", "2024-03-01 08:00")])
    await person(uow, "app", [("A", "2024-03-01 09:00"), ("B", "2024-03-01 10:00")], source="app")
    assert [s["people"] for s in await funnel(client, ["A", "B"])] == [1, 1]
    in_berlin = await funnel(client, ["A", "B"], timezone="Europe/Berlin")
    assert [s["people"] for s in in_berlin] == [2, 2]
    assert in_berlin[1]["median_seconds_from_previous"] == pytest.approx((3600 + 8.5 * 3600) / 2)
    only_app = await funnel(client, ["A", "B"], timezone="Europe/Berlin", source="app")
    assert [s["people"] for s in only_app] == [1, 1]
    web = await metric(client, type="people_who_did", event="A", source=SOURCE, timezone="Europe/Berlin")
    assert series(web) == {"2024-03-01": 1, "2024-03-02": 0, "2024-03-03": 0}


# ------------------------------------------------------------------------------------ 422s


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "nope"}, ["body", "type"]),
        ({"to": "2024-02-28"}, ["body", "to"]),
        ({"from": "2022-12-31", "to": "2024-01-01"}, ["body", "to"]),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"timezone": "../../etc/passwd"}, ["body", "timezone"]),
        ({"extra": 1}, ["body", "extra"]),
        ({"type": "conversion_rate"}, ["body", "second_event"]),
        ({"type": "property_total"}, ["body", "property"]),
        ({"where": [{"property": "a", "op": "gt", "value": 1}]}, ["body", "where", 0, "op"]),
        ({"from": "0001-01-01", "to": "0001-01-02"}, ["body", "from"]),
        ({"event": ""}, ["body", "event"]),
    ],
)
async def test_metric_422s_name_the_field(client, body: dict[str, Any], loc: list[Any]) -> None:
    full = {"type": "people_who_did", "event": "Visit", "from": "2024-03-01", "to": "2024-03-03", **body}
    response = await client.post("/api/metrics/query", json=full, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"][: len(loc)] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"steps": ["A"]}, ["body", "steps"]),
        ({"steps": [f"s{i}" for i in range(21)]}, ["body", "steps"]),
        ({"to": "2024-02-01"}, ["body", "to"]),
        ({"step": 3}, ["body", "step"]),
        ({"step": 0}, ["body", "step"]),
        ({"step": 1, "cursor": "!!"}, ["body", "cursor"]),
    ],
)
async def test_funnel_422s_name_the_field(client, body: dict[str, Any], loc: list[Any]) -> None:
    full = {"steps": ["A", "B"], "from": "2024-03-01", "to": "2024-03-03", **body}
    path = "/api/funnels/query/people" if "step" in body else "/api/funnels/query"
    response = await client.post(path, json=full, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"][: len(loc)] for e in response.json()["detail"]]


async def test_analytics_needs_the_admin_token(client) -> None:
    response = await client.post(
        "/api/funnels/query", json={"steps": ["A", "B"], "from": "2024-03-01", "to": "2024-03-01"}
    )
    assert response.status_code == 401


# ------------------------------------------------------------------ against a model in Python


def model_funnel(histories: list[list[tuple[str, datetime]]], steps: list[str], lo: datetime, hi: datetime):
    reached: list[list[float]] = [[] for _ in steps]  # per step: seconds from the previous step
    for history in histories:
        inside = sorted((t, kind) for kind, t in history if lo <= t < hi)
        starts = [t for t, kind in inside if kind == steps[0]]
        if not starts:
            continue
        prev = starts[0]
        reached[0].append(0.0)
        for k, step in enumerate(steps[1:], start=1):
            same = step == steps[k - 1]
            later = [t for t, kind in inside if kind == step and (t > prev if same else t >= prev)]
            if not later:
                break
            reached[k].append((later[0] - prev).total_seconds())
            prev = later[0]
    return reached


async def test_funnels_and_metrics_match_a_model_in_python(client, uow, tracardi_source) -> None:
    import random
    import statistics
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    rng = random.Random(15)
    origin = at("2024-03-29 12:00")
    histories = []
    for i in range(40):
        history = [
            (rng.choice("ABCD"), origin + timedelta(seconds=rng.randrange(0, 4 * 86400)))
            for _ in range(rng.randrange(1, 9))
        ]
        histories.append(history)
        await person(uow, f"m{i}", [(kind, t.strftime("%Y-%m-%d %H:%M:%S")) for kind, t in history])
    berlin = ZoneInfo("Europe/Berlin")
    lo = datetime(2024, 3, 30, tzinfo=berlin).astimezone(UTC)
    hi = datetime(2024, 4, 2, tzinfo=berlin).astimezone(UTC)  # 30 March to 1 April, across DST
    window = {"from": "2024-03-30", "to": "2024-04-01", "timezone": "Europe/Berlin"}

    for steps in (["A", "B", "C", "D"], ["B", "B", "A"], ["D", "A"]):
        expected = model_funnel(histories, steps, lo, hi)
        got = await funnel(client, steps, **window)
        assert [s["people"] for s in got] == [len(r) for r in expected], steps
        assert len(expected[1]) > 2, "the model's histories reach a second step"
        for k in range(1, len(steps)):
            median = statistics.median(expected[k]) if expected[k] else None
            assert got[k]["median_seconds_from_previous"] == pytest.approx(median), (steps, k)

    def local_day(t: datetime) -> str:
        return t.astimezone(berlin).date().isoformat()

    inside = [[(kind, t) for kind, t in h if lo <= t < hi] for h in histories]
    days = ["2024-03-30", "2024-03-31", "2024-04-01"]
    people = await metric(client, type="people_who_did", event="A", **window)
    times = await metric(client, type="times_happened", event="A", **window)
    assert series(people) == {
        d: sum(any(k == "A" and local_day(t) == d for k, t in h) for h in inside) for d in days
    }
    assert series(times) == {
        d: sum(k == "A" and local_day(t) == d for h in inside for k, t in h) for d in days
    }
    assert people["value"] == sum(any(k == "A" for k, _ in h) for h in inside)

    starts = converted = 0
    gaps = []
    for h in inside:
        a_times = sorted(t for k, t in h if k == "A")
        if not a_times:
            continue
        starts += 1
        after = sorted(t for k, t in h if k == "B" and t >= a_times[0])
        if after:
            converted += 1
            gaps.append((after[0] - a_times[0]).total_seconds())
    assert 0 < converted < starts
    rate = await metric(client, type="conversion_rate", event="A", second_event="B", **window)
    assert rate["value"] == pytest.approx(converted / starts)
    between = await metric(client, type="average_time_between", event="A", second_event="B", **window)
    assert between["value"] == pytest.approx(statistics.mean(gaps))

    repeat_starts = repeat_converted = 0
    for h in inside:
        a_times = sorted(t for k, t in h if k == "A")
        for j, start in enumerate(a_times):
            until = a_times[j + 1] if j + 1 < len(a_times) else hi
            repeat_starts += 1
            repeat_converted += any(k == "B" and start <= t < until for k, t in h)
    repeat = await metric(
        client, type="conversion_rate", event="A", second_event="B", repeatable=True, **window
    )
    assert repeat["value"] == pytest.approx(repeat_converted / repeat_starts)


async def test_a_where_value_json_cannot_hold_is_422(client) -> None:
    body = (
        '{"type": "times_happened", "event": "E", "from": "2024-03-01", "to": "2024-03-01",'
        ' "where": [{"property": "n", "op": "eq", "value": NaN}]}'
    )
    headers = {**ADMIN, "Content-Type": "application/json"}
    response = await client.post("/api/metrics/query", content=body, headers=headers)
    assert response.status_code == 422
    assert any(e["loc"][:4] == ["body", "where", 0, "value"] for e in response.json()["detail"])


async def test_patch_a_saved_metric(client, uow, tracardi_source) -> None:
    await person(uow, "p", [("Visit", "2024-03-01 10:00"), ("Buy", "2024-03-01 11:00")])
    created = await client.post(
        "/api/metrics", json={"name": "Visits", "type": "people_who_did", "event": "Visit"}, headers=ADMIN
    )
    metric_id = created.json()["id"]
    renamed = await client.patch(f"/api/metrics/{metric_id}", json={"name": "Site visits"}, headers=ADMIN)
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["event"]) == ("Site visits", "Visit")
    # A type that needs a second event, without one: 422 naming it, nothing changed.
    bad = await client.patch(f"/api/metrics/{metric_id}", json={"type": "conversion_rate"}, headers=ADMIN)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "second_event"]
    unknown = await client.patch(f"/api/metrics/{metric_id}", json={"colour": "red"}, headers=ADMIN)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "colour"]
    changed = await client.patch(
        f"/api/metrics/{metric_id}",
        json={"type": "conversion_rate", "second_event": "Buy"},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    got = (
        await client.get(
            f"/api/metrics/{metric_id}", params={"from": "2024-03-01", "to": "2024-03-01"}, headers=ADMIN
        )
    ).json()
    assert (got["name"], got["type"], got["second_event"]) == ("Site visits", "conversion_rate", "Buy")
    assert got["result"]["value"] == 1.0
    # ``null`` clears a clearable field (and the type then needs it again: 422).
    cleared = await client.patch(f"/api/metrics/{metric_id}", json={"second_event": None}, headers=ADMIN)
    assert cleared.status_code == 422
    assert (await client.patch("/api/metrics/nope", json={"name": "x"}, headers=ADMIN)).status_code == 404


async def test_patch_a_saved_funnel(client, uow, tracardi_source) -> None:
    await person(uow, "p", [("A", "2024-03-01 10:00"), ("C", "2024-03-01 10:05")])
    created = await client.post(
        "/api/funnels", json={"name": "AB", "steps": ["A", "B"], "source": "elsewhere"}, headers=ADMIN
    )
    funnel_id = created.json()["id"]
    patched = await client.patch(
        f"/api/funnels/{funnel_id}", json={"steps": ["A", "C"], "source": None}, headers=ADMIN
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["steps"], patched.json()["source"]) == (
        "AB",
        ["A", "C"],
        None,
    )
    got = (
        await client.get(
            f"/api/funnels/{funnel_id}", params={"from": "2024-03-01", "to": "2024-03-01"}, headers=ADMIN
        )
    ).json()
    assert [s["people"] for s in got["steps"]] == [1, 1]
    short = await client.patch(f"/api/funnels/{funnel_id}", json={"steps": ["A"]}, headers=ADMIN)
    assert short.status_code == 422
    assert short.json()["detail"][0]["loc"] == ["body", "steps"]
    assert (await client.patch("/api/funnels/nope", json={"name": "x"}, headers=ADMIN)).status_code == 404
