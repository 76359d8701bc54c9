"""Migrations are code: an empty database of each kind upgrades to head and matches the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from tests.conftest import asyncpg_dsn, run_sync
from trackway.db.migrate import alembic_config, upgrade
from trackway.db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    base_url: str = request.getfixturevalue("pg_url")
    name = f"trackway_migrate_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(base_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_upgrade_empty_database_to_head_and_models_match(empty_database: str) -> None:
    upgrade(empty_database)
    # `alembic check`: autogenerate finds nothing the migrations lack.
    command.check(alembic_config(empty_database))
    upgrade(empty_database)  # idempotent


def test_downgrade_to_base_and_up_again(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")


def test_sqlite_schema_has_every_table(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
