"""Shared fixtures: every database test runs on a real SQLite file and on a real PostgreSQL.

PostgreSQL comes from ``TRACKWAY_TEST_DATABASE_URL`` (default: the local server's ``test``
database). When it cannot be reached its half of the suite is skipped with a loud reason,
except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from trackway.app import create_app
from trackway.core import sources as source_service
from trackway.core.sources import SourceInfo
from trackway.db import models
from trackway.db.errors import is_unavailable
from trackway.db.migrate import upgrade
from trackway.db.uow import SqlUnitOfWork
from trackway.settings import Settings

PG_URL = os.environ.get("TRACKWAY_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TABLES = ("events", "carts", "sessions", "identities", "profile_merges", "profiles", "sources")
#: Emptied before each PostgreSQL test too: what people saved (metrics and funnels), not what was collected.
SAVED_TABLES = ("metrics", "funnels")
#: Emptied before each PostgreSQL test too: erasures and their suppressions, the jobs' state.
PRIVACY_TABLES = ("erasures", "suppressions", "job_state")


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_reachable(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


async def _pg_admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped at the end.

    It is created next to ``TRACKWAY_TEST_DATABASE_URL``'s database, so two runs on one
    server (two developers, CI and a developer) never truncate each other's rows.
    Unreachable: a loud skip, or a failure under ``CI=true``.
    """
    problem = run_sync(_pg_reachable(PG_URL))
    if problem is not None:
        message = f"PostgreSQL at {PG_URL} is unreachable ({problem}): PostgreSQL tests NOT RUN"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        # Loud on the terminal (pytest's -ra repeats it in the summary); a warning would be
        # turned into an error by the suite's filterwarnings.
        print(f"\n*** {message} ***", file=sys.__stderr__)
        pytest.skip(message)
    name = f"trackway_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    run_sync(_pg_admin(PG_URL, f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        run_sync(_pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test: migrating per test would be slow."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A clean, migrated database of each kind."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "trackway.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_url")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        emptied = (*SAVED_TABLES, *PRIVACY_TABLES, *TABLES, "segments", "rejections")
        await conn.execute(f"TRUNCATE {', '.join(emptied)} CASCADE")
    finally:
        await conn.close()
    yield url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override single settings by redefining this fixture."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_token": ADMIN_TOKEN,
        "source_cache_seconds": 0,
        "db_pool_size": 20,
        # The cart outcome job runs when a test asks (core/cart_outcomes.run_pass), not on a clock.
        "cart_outcomes_interval": 0,
    }
    values.update(settings_overrides)
    return Settings(**values)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


#: A browser's user agent for the test clients: httpx's own (``python-httpx/...``) is a bot's
#: (``core/bots.py``), whose events the read side leaves out.
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    headers = {"User-Agent": BROWSER_UA}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers) as c:
        yield c


@pytest.fixture(autouse=True)
def events_reference_real_rows(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test with an app: no event points at a missing profile, session or source.

    The events table has no foreign keys (migration 0003); the ingest core keeps its
    references, and this checks it after every test that wrote through the core. It runs
    before the app's teardown, on a connection of its own.
    """
    if "app" not in request.fixturenames:
        yield
        return
    test_settings: Settings = request.getfixturevalue("settings")
    request.getfixturevalue("app")
    yield

    async def check() -> dict[str, int]:
        engine = create_async_engine(test_settings.database_url)
        try:
            return await orphan_events(SqlUnitOfWork(engine))
        finally:
            await engine.dispose()

    try:
        found = run_sync(check())
    except Exception as exc:
        if is_unavailable(exc):
            return  # the test made its database unreachable: nothing to check
        raise
    assert found == {}, f"events pointing at missing rows: {found}"


async def orphan_events(uow: SqlUnitOfWork) -> dict[str, int]:
    """Events whose profile, session or source does not exist, by the missing kind."""
    checks = {
        "profile": "SELECT count(*) FROM events e WHERE e.profile_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = e.profile_id)",
        "session": "SELECT count(*) FROM events e WHERE e.session_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = e.session_id)",
        "source": "SELECT count(*) FROM events e "
        "WHERE NOT EXISTS (SELECT 1 FROM sources s WHERE s.id = e.source_id)",
    }
    found: dict[str, int] = {}
    async with uow.read() as db:
        for kind, sql in checks.items():
            n = int((await db.exec_driver_sql(sql)).scalar_one())
            if n:
                found[kind] = n
    return found


@pytest.fixture
def uow(app: FastAPI) -> SqlUnitOfWork:
    services = app.state.services
    return services.uow  # type: ignore[no-any-return]


@pytest.fixture
async def tracardi_source(uow: SqlUnitOfWork) -> SourceInfo:
    return await source_service.create_source(
        uow, name="web", dialect="tracardi", source_id="3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
    )


async def count(uow: SqlUnitOfWork, table_name: str, **where: Any) -> int:
    """Rows of a table, optionally filtered by column equality."""
    table = models.Base.metadata.tables[table_name]
    stmt = select(func.count()).select_from(table)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    async with uow.read() as db:
        return int((await db.execute(stmt)).scalar_one())


async def counts(uow: SqlUnitOfWork) -> dict[str, int]:
    return {name: await count(uow, name) for name in TABLES}
