"""A failed request logs no value: no secret, no email, no IP, formatted exceptions included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import ADMIN
from tests.helpers import tracker_payload
from trackway import logsafe

SECRET = "sekrit-Value-0123456789"
EMAIL = "alice.hidden@example.com"
SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


@pytest.fixture
async def quiet_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that receives the 500 instead of the app's exception (the server's view)."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.23", 40000), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def capture_all(caplog: pytest.LogCaptureFixture) -> None:
    """INFO and up from everyone, DEBUG from Trackway, SQLAlchemy and uvicorn. (aiosqlite's own
    DEBUG records repeat every statement's parameters: a driver's debug switch, off by default.)"""
    caplog.set_level(logging.INFO)
    for name in ("trackway", "sqlalchemy", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as a handler would write it: message, then the formatted exception."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.fixture
async def break_table(uow) -> AsyncIterator[Callable[[str, str], Awaitable[None]]]:
    """Renames a column so that the next write to its table fails inside the database; the
    PostgreSQL database is shared by the session's tests, so the name is given back after."""
    renamed: list[tuple[str, str]] = []

    async def rename(table: str, column: str) -> None:
        async with uow.transaction() as db:
            await db.execute(text(f"ALTER TABLE {table} RENAME COLUMN {column} TO {column}_gone"))
        renamed.append((table, column))

    yield rename
    for table, column in renamed:
        async with uow.transaction() as db:
            await db.execute(text(f"ALTER TABLE {table} RENAME COLUMN {column}_gone TO {column}"))


async def test_a_failed_source_create_logs_no_secret(quiet_client, break_table, caplog) -> None:
    await break_table("sources", "signed_only")
    capture_all(caplog)
    response = await quiet_client.post(
        "/api/sources", headers=ADMIN, json={"name": EMAIL, "dialect": "tracify", "secret": SECRET}
    )
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error."}
    logged = everything_logged(caplog)
    assert "Traceback" in logged  # the failure is logged, with its frames
    assert "sources" in logged or "Error" in logged
    assert SECRET not in logged and EMAIL not in logged
    assert "[parameters:" not in logged


@pytest.mark.parametrize("settings_overrides", [{"group_commit": True}, {"group_commit": False}])
async def test_a_failed_ingest_logs_no_traits_or_ip(
    quiet_client, tracardi_source, break_table, caplog
) -> None:
    await break_table("events", "properties")
    capture_all(caplog)
    payload = tracker_payload(SOURCE, session="s", profile=None)
    payload["events"][0]["properties"] = {"email": EMAIL, "secret": SECRET}
    response = await quiet_client.post("/track", json=payload)
    assert response.status_code == 500, response.text
    logged = everything_logged(caplog)
    assert caplog.records
    for value in (EMAIL, SECRET, "198.51.100"):
        assert value not in logged, value


def test_the_filter_covers_child_loggers_and_exception_arguments(caplog) -> None:
    logsafe.install()
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("trackway.core.group_commit")
    try:
        raise ValueError(f"Key (value)=({EMAIL}) already exists")
    except ValueError as exc:
        log.warning("group failed", exc_info=True)
        logging.getLogger("trackway.core.ingest").info("retry %d after %s", 1, exc)
    logged = everything_logged(caplog)
    assert EMAIL not in logged
    assert "ValueError" in logged and "retry 1 after ValueError" in logged


def test_the_access_log_keeps_the_path_not_the_query(caplog) -> None:
    logsafe.install()
    caplog.set_level(logging.INFO)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.7:4000", "GET", f"/set?sid=s&data={EMAIL}", "1.1", 200
    )
    logged = everything_logged(caplog)
    assert EMAIL not in logged
    assert '"GET /set?[query redacted] HTTP/1.1" 200' in logged
