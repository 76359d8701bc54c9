"""The read side's questions, timed against a running Trackway (``make bench-scale``'s ``queries``).

Issue 15's targets, on the preloaded 10 M-event database (prewarmed, nothing else running):

* a four-step funnel over 30 days, a daily metric of each of the seven types over 30 days, and a
  segment with one property and one event condition: p50 < 1 s and p99 < 2 s each;
* ``GET /api/people`` filtered by a trait and ``GET /api/events`` by type and day: p99 < 100 ms.

Each question is asked once unmeasured (the server's first query of a shape plans it and fills its
caches), then ``reps`` times one after the other; the answer's headline number is kept with the
timings so that a fast wrong answer (an empty result) shows. The questions use the event types and
properties that ``bench/preload.py`` writes (page-view, scroll-depth, product-view, purchase; a
product's ``price``, a purchase's ``total``; the ``newsletter`` trait of identified visitors).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

#: Seconds: issue 15's targets.
HEAVY_P50, HEAVY_P99 = 1.0, 2.0
LIGHT_P99 = 0.1

FUNNEL = ["page-view", "scroll-depth", "product-view", "purchase"]
METRICS: dict[str, dict[str, Any]] = {
    "people_who_did": {"event": "page-view"},
    "times_happened": {"event": "product-view"},
    "average_per_person": {"event": "page-view"},
    "conversion_rate": {"event": "product-view", "second_event": "purchase"},
    "average_time_between": {"event": "product-view", "second_event": "purchase"},
    "property_total": {"event": "purchase", "property": "total"},
    "property_average": {"event": "product-view", "property": "price"},
}
SEGMENT = {
    "all": [
        {"property": "newsletter", "op": "eq", "value": True},
        {"event": "purchase", "performed": True, "within_days": 30, "min_count": 1},
    ]
}


@dataclass
class QueryResult:
    name: str
    kind: str  # "heavy" (p50 < 1 s, p99 < 2 s) or "light" (p99 < 100 ms)
    reps: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    #: The answer's headline (a funnel's people per step, a metric's value, a segment's size,
    #: items on the page): a wrong answer that is fast shows here.
    answer: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.errors or self.p99_ms is None or self.p50_ms is None:
            return False
        if self.kind == "heavy":
            return self.p50_ms < 1000 * HEAVY_P50 and self.p99_ms < 1000 * HEAVY_P99
        return self.p99_ms < 1000 * LIGHT_P99


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _time(
    client: httpx.Client,
    name: str,
    kind: str,
    reps: int,
    ask: Callable[[httpx.Client], httpx.Response],
    headline: Callable[[dict[str, Any]], str],
) -> QueryResult:
    result = QueryResult(name=name, kind=kind)
    timings: list[float] = []
    for attempt in range(reps + 1):
        started = time.perf_counter()
        try:
            response = ask(client)
        except httpx.TimeoutException:
            result.errors.append(f"no answer within {client.timeout.read:.0f} s")
            break
        elapsed = 1000 * (time.perf_counter() - started)
        if response.status_code != 200:
            result.errors.append(f"{response.status_code}: {response.text[:200]}")
            break
        if attempt == 0:
            result.answer = headline(response.json())
            continue
        timings.append(elapsed)
    if timings:
        result.reps = len(timings)
        result.p50_ms = statistics.median(timings)
        result.p99_ms = _percentile(timings, 0.99)
        result.max_ms = max(timings)
    return result


def run(
    base: str, token: str, *, reps: int = 10, today: date | None = None, timeout: float = 60.0
) -> list[QueryResult]:
    """Every question of issue 15's speed list, ``reps`` times each, one at a time."""
    today = today or datetime.now(UTC).date()
    first = (today - timedelta(days=29)).isoformat()
    last = today.isoformat()
    window = {"from": first, "to": last}
    results: list[QueryResult] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
        results.append(
            _time(
                client,
                "funnel, 4 steps, 30 days",
                "heavy",
                reps,
                lambda c: c.post("/api/funnels/query", json={"steps": FUNNEL, **window}),
                lambda body: "people " + "/".join(str(step["people"]) for step in body["steps"]),
            )
        )
        for metric_type, fields in METRICS.items():
            results.append(
                _time(
                    client,
                    f"metric {metric_type}, daily, 30 days",
                    "heavy",
                    reps,
                    lambda c, t=metric_type, f=fields: c.post(
                        "/api/metrics/query", json={"type": t, **f, **window}
                    ),
                    lambda body: f"value {body['value']}, {len(body['series'])} days",
                )
            )
        results.append(
            _time(
                client,
                "segment: a trait and an event in 30 days",
                "heavy",
                reps,
                lambda c: c.post("/api/segments/preview", json={"condition": SEGMENT, "limit": 100}),
                lambda body: f"size {body['size']}",
            )
        )
        trait = json.dumps({"property": "newsletter", "op": "eq", "value": True})
        results.append(
            _time(
                client,
                "GET /api/people, by a trait",
                "light",
                reps * 5,
                lambda c: c.get("/api/people", params={"where": trait, "limit": 100}),
                lambda body: f"{len(body['items'])} items",
            )
        )
        day = today - timedelta(days=3)
        results.append(
            _time(
                client,
                "GET /api/events, by type and day",
                "light",
                reps * 5,
                lambda c: c.get(
                    "/api/events",
                    params={
                        "type": "purchase",
                        "from": f"{day.isoformat()}T00:00:00Z",
                        "to": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
                        "limit": 100,
                    },
                ),
                lambda body: f"{len(body['items'])} items",
            )
        )
    return results


def summary_lines(results: list[QueryResult]) -> list[str]:
    lines = []
    for r in results:
        target = "p50 < 1 s, p99 < 2 s" if r.kind == "heavy" else "p99 < 100 ms"
        if r.errors:
            lines.append(f"{r.name}: FAILED {r.errors[0]}")
            continue
        lines.append(
            f"{r.name}: p50 {r.p50_ms:,.0f} ms, p99 {r.p99_ms:,.0f} ms, max {r.max_ms:,.0f} ms over "
            f"{r.reps}; {r.answer} (target {target}: {'OK' if r.ok else 'MISSED'})"
        )
    return lines
