"""Migration 0009 on a database with sources and carts (up, down, up again): carts with items
get an open lifecycle from their last change, due an hour later; empty ones none. On SQLite
and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import _pg_admin, run_sync
from trackway.db.migrate import alembic_config


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    base_url: str = request.getfixturevalue("pg_url")
    name = f"trackway_migrate_{uuid.uuid4().hex[:8]}"
    run_sync(_pg_admin(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        run_sync(_pg_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sql(url: str, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as db:
                result = await db.execute(text(statement), params or {})
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return run_sync(go())  # type: ignore[no-any-return]


def test_carts_with_items_get_an_open_lifecycle(database: str) -> None:
    config = alembic_config(database)
    command.upgrade(config, "0006")
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    stamp = at if database.startswith("postgresql") else at.replace(tzinfo=None)
    sql(
        database,
        "INSERT INTO sources (id, name, dialect, enabled, signed_only, allowed_origins, created_at) "
        "VALUES ('shop', 'shop', 'insend', true, false, '[]', :at)",
        {"at": stamp},
    )
    for pid in ("full", "empty"):
        sql(
            database,
            "INSERT INTO profiles (id, traits, anonymous, visits, created_at, updated_at, last_seen_at) "
            "VALUES (:id, '{}', true, 0, :at, :at, :at)",
            {"id": pid, "at": stamp},
        )
    items = '[{"product_id": "1", "qnt": "1", "price": "2"}]'
    for pid, lines, n in (("full", items, 1), ("empty", "[]", 0)):
        sql(
            database,
            "INSERT INTO carts (profile_id, source_id, items, total, item_count, created_at, updated_at) "
            "VALUES (:id, 'shop', :items, '2', :n, :at, :at)",
            {"id": pid, "items": lines, "n": n, "at": stamp},
        )
    command.upgrade(config, "0009")
    rows = {
        row.profile_id: row
        for row in sql(
            database,
            "SELECT profile_id, lifecycle_id, lifecycle_started_at, outcome, outcome_due_at FROM carts",
        )
    }
    assert sql(database, "SELECT cart_abandon_after FROM sources")[0][0] == 3600
    full, empty = rows["full"], rows["empty"]
    assert full.lifecycle_id and full.outcome is None

    def moment(value: Any) -> datetime:
        value = datetime.fromisoformat(value) if isinstance(value, str) else value
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    assert moment(full.lifecycle_started_at) == at
    assert moment(full.outcome_due_at) == at + timedelta(hours=1)
    assert (empty.lifecycle_id, empty.outcome_due_at) == (None, None)
    command.downgrade(config, "0006")  # with rows in every table
    command.upgrade(config, "0009")
