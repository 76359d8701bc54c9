"""Engines: SQLite in WAL mode with immediate write transactions, PostgreSQL through a sized pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from trackway import jsonutil
from trackway.settings import Settings

#: Execution option marking a connection that only reads (SQLite then begins a deferred transaction).
READ_ONLY = "trackway_read_only"


def make_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    """Build the engine for ``settings.database_url``; nothing is created at import time.

    On PostgreSQL, with ``db_prefer_indexes``, Trackway's connections plan with sequential
    scans as the last resort. Every query Trackway makes finds rows by a key; on tables
    whose statistics are missing or stale (autovacuum off, or not yet run on a young
    table) the planner picked sequential scans for them, and under ``make bench`` that
    doubled PostgreSQL's CPU per request (91 % against 44 % of a core, 2,017 against 2,602
    req/s in back-to-back 15 s runs). A query with no usable index still scans.
    """
    url = settings.database_url
    kwargs: dict[str, Any] = {
        # A statement's parameters are visitors' data and sources' secrets: never in an
        # error's text, which ends up in logs (logsafe.py redacts the rest).
        "hide_parameters": True,
        "json_serializer": jsonutil.dumps_str,
        "json_deserializer": jsonutil.loads,
    }
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": settings.sqlite_busy_timeout_ms / 1000}
        kwargs.update(overrides)
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    if settings.db_prefer_indexes:
        # JIT off too: a query that must scan anyway then looks expensive enough to be
        # JIT-compiled on every run (PostgreSQL's jit_above_cost), which costs milliseconds.
        kwargs["connect_args"] = {"server_settings": {"enable_seqscan": "off", "jit": "off"}}
    kwargs.update(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=1800,
    )
    kwargs.update(overrides)
    return create_async_engine(url, **kwargs)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE``.

    SQLite has one writer. A deferred transaction that reads first and writes later can
    fail at once with SQLITE_BUSY when another writer committed in between; taking the
    write lock at ``BEGIN`` makes every other writer wait (up to the busy timeout) instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL (the default) syncs the WAL at each commit: an acknowledged write survives power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # readers never block in WAL mode
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
