"""``GET /api/overview``: what is arriving now, for the console's first page and for scripts.

Events per minute over the last hour and per hour over the last day, by source (each with its
dialect); every source with its events today (UTC); and the requests this process refused,
by reason, from its Prometheus counters (``metrics.py``: one process's counts since it
started, as ``/metrics`` shows them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from trackway.api.deps import AdminAuth, only_params
from trackway.db import overview as overview_db
from trackway.metrics import metrics_of
from trackway.responses import json_response
from trackway.services import Services

router = APIRouter(prefix="/api", tags=["read"], dependencies=[AdminAuth])

#: Why a request was refused, in an operator's words, by status code.
REJECTION_REASONS: Final[dict[int, str]] = {
    400: "unreadable request",
    401: "unknown or disabled source, or a wrong admin token",
    403: "origin not allowed, or a signature that does not verify",
    404: "unknown path or id",
    405: "method not allowed",
    408: "body or headers too slow",
    413: "body or batch too large",
    415: "unsupported content type",
    422: "invalid data",
    431: "headers too large",
    499: "client hung up mid-body",
    500: "server error",
    503: "database unavailable or too many connections",
}


def rejections(request: Request) -> list[dict[str, Any]]:
    """This process's answered requests with a 4xx or 5xx status, by dialect and status."""
    rows = []
    for family in metrics_of(request.app).requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            status = int(sample.labels["status"])
            if status >= 400 and sample.value:
                rows.append(
                    {
                        "status": status,
                        "reason": REJECTION_REASONS.get(status, "other"),
                        "dialect": sample.labels["dialect"],
                        "count": int(sample.value),
                    }
                )
    return sorted(rows, key=lambda row: (-row["count"], row["status"], row["dialect"]))


def _series(rows: list[dict[str, Any]], known: dict[str, dict[str, Any]], size: int) -> list[dict[str, Any]]:
    by_source: dict[str, list[int]] = {}
    for row in rows:
        if 0 <= row["bucket"] < size:
            by_source.setdefault(row["source_id"], [0] * size)[row["bucket"]] += row["count"]
    series = []
    for source_id, counts in by_source.items():
        info = known.get(source_id, {"name": source_id, "dialect": "unknown"})
        series.append(
            {
                "source_id": source_id,
                "name": info["name"],
                "dialect": info["dialect"],
                "counts": counts,
                "total": sum(counts),
            }
        )
    return sorted(series, key=lambda item: (-item["total"], item["source_id"]))


@router.get("/overview", dependencies=[Depends(only_params())])
async def overview(request: Request, services: Services) -> Response:
    """Events per minute (last hour) and per hour (last day) by source and dialect, each source's
    events today (UTC, by event time), and the requests this process refused, by reason."""
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    hour_start, hour_end = minute - timedelta(minutes=59), minute + timedelta(minutes=1)
    day_start, day_end = hour - timedelta(hours=23), hour + timedelta(hours=1)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    dialect = services.uow.dialect
    async with services.uow.read() as db:
        known = await overview_db.source_dialects(db)
        minutes = await overview_db.buckets(db, dialect, hour_start, hour_end, 60)
        hours = await overview_db.buckets(db, dialect, day_start, day_end, 3600)
        today = await overview_db.per_source(db, midnight, midnight + timedelta(days=1))
    return json_response(
        {
            "now": now.isoformat(),
            "last_hour": {
                "start": hour_start.isoformat(),
                "step_seconds": 60,
                "series": _series(minutes, known, 60),
            },
            "last_day": {
                "start": day_start.isoformat(),
                "step_seconds": 3600,
                "series": _series(hours, known, 24),
            },
            "today": {
                "start": midnight.isoformat(),
                "sources": [
                    {"id": source_id, **info, "events": today.get(source_id, 0)}
                    for source_id, info in sorted(known.items(), key=lambda kv: kv[1]["name"])
                ],
            },
            "rejected": rejections(request),
        }
    )
