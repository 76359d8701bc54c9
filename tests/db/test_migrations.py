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


def test_sqlite_upgrade_keeps_existing_rows(tmp_path: Path) -> None:
    """Revisions after 0005 change ``profiles`` in place: a copy of the table (Alembic's batch
    mode on SQLite) failed the foreign keys of the sessions already pointing at it."""
    import sqlite3

    path = tmp_path / "old.db"
    config = alembic_config(f"sqlite+aiosqlite:///{path}")
    command.upgrade(config, "0005")
    db = sqlite3.connect(path)
    at = "2026-01-01 00:00:00.000000"
    db.execute(
        "INSERT INTO sources (id, name, dialect, enabled, signed_only, allowed_origins, created_at) "
        f"VALUES ('s', 's', 'tracardi', 1, 0, '[]', '{at}')"
    )
    db.execute(
        "INSERT INTO profiles (id, traits, anonymous, visits, created_at, updated_at, last_seen_at) "
        f"VALUES ('p', '{{}}', 1, 1, '{at}', '{at}', '{at}')"
    )
    db.execute(
        "INSERT INTO sessions (id, source_id, client_key, profile_id, started_at, last_event_at, "
        f"event_count, context) VALUES ('x', 's', 'k', 'p', '{at}', '{at}', 0, '{{}}')"
    )
    db.commit()
    db.close()
    command.upgrade(config, "head")
    command.downgrade(config, "0005")
    command.upgrade(config, "head")
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT id, protected FROM profiles").fetchall() == [("p", 0)]
        assert db.execute("SELECT id, profile_id FROM sessions").fetchall() == [("x", "p")]
    finally:
        db.close()
