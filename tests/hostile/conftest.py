"""Hostile input: one source per dialect, request helpers, and row counts in one statement."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, TABLES
from trackway.core import sources as source_service
from trackway.db.uow import SqlUnitOfWork

TRACARDI = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
TRACKTOR = "tracktor-app"
INSEND = "insend-shop"
TRACIFY = "5f0e3c2a-7f7b-4c1e-9a51-2f3b8d1c0a11"
SECRET = "tracify-test-secret-0123456789abcdef"
SEGMENT = "segment-write-key"
INVALID_SOURCE = {"detail": "Access denied. Invalid source."}


@pytest.fixture
async def sources(uow: SqlUnitOfWork) -> None:
    """An enabled source of every dialect."""
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id=TRACARDI)
    await source_service.create_source(uow, name="app", dialect="tracktor", source_id=TRACKTOR)
    await source_service.create_source(uow, name="shop", dialect="insend", source_id=INSEND)
    await source_service.create_source(
        uow, name="backend", dialect="tracify", source_id=TRACIFY, secret=SECRET
    )
    await source_service.create_source(uow, name="sdk", dialect="segment", source_id=SEGMENT)


async def row_counts(uow: SqlUnitOfWork) -> dict[str, int]:
    """Every table's row count, in one statement: the property tests take it twice per example."""
    sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {name})" for name in TABLES)
    async with uow.read() as db:
        row = (await db.exec_driver_sql(sql)).one()
    return dict(zip(TABLES, (int(n) for n in row), strict=True))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tracardi_payload(**event: Any) -> dict[str, Any]:
    return {"source": {"id": TRACARDI}, "events": [{"type": "page-view", **event}]}


def tracify_event(type_: str = "pageview", **data: Any) -> dict[str, Any]:
    return {
        "url": "https://shop.example/p/1",
        "customer_site_id": TRACIFY,
        "identity_data": {sha("198.51.100.4"): 3, sha("Mozilla/5.0"): 4},
        "datetime": datetime(2024, 6, 21, 12, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "type": type_,
        "data": {"origin": "https://shop.example", **data},
    }


def insend_data(type_: str = "link", properties: Any = None, **extra: Any) -> str:
    return json.dumps({"type": type_, "properties": properties or {}, **extra})


async def post_json(client: httpx.AsyncClient, path: str, body: Any, **headers: str) -> httpx.Response:
    """``body`` as JSON text; a ``str`` is sent as it is (for tokens ``json.dumps`` cannot write)."""
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return await client.post(path, content=content, headers={"Content-Type": "application/json", **headers})


async def readable(client: httpx.AsyncClient, profile_id: str) -> None:
    """Every stored row of the profile can be read back through the API."""
    for path in (f"/api/profiles/{profile_id}", f"/api/profiles/{profile_id}/events"):
        response = await client.get(path, headers=ADMIN)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
