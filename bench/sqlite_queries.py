"""The read side's questions on SQLite, the embedded default, over 1 M events (issue 15).

``make bench-scale`` times them on PostgreSQL; on SQLite the issue asks that they answer correctly
and that their times be noted. This copies the newest ``--events`` events of the preloaded
``trackway_scale`` PostgreSQL database (with every profile, identity and the sessions they belong
to) into a fresh, migrated SQLite file, serves it with ``trackway serve``, asks
``bench/queries.py``'s questions, and compares each answer's headline with PostgreSQL's answer to
the same question over the same rows (a second database, ``trackway_scale_1m``, holds exactly the
copied rows): the same numbers on both, or the run fails.

    .venv/bin/python bench/sqlite_queries.py [--events 1000000] [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import harness
import queries
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from trackway.db.models import events, identities, profiles, sessions, sources

SCALE_DATABASE = "trackway_scale"
COPY_DATABASE = "trackway_scale_1m"
CHUNK = 20_000
TABLES = (
    ("sources", sources, "SELECT * FROM sources"),
    ("profiles", profiles, "SELECT * FROM profiles"),
    ("identities", identities, "SELECT * FROM identities"),
    (
        "sessions",
        sessions,
        "SELECT * FROM sessions WHERE id IN (SELECT DISTINCT session_id FROM picked)",
    ),
    ("events", events, "SELECT * FROM picked"),
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _rows(url: str, n_events: int, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"CREATE TEMP TABLE picked AS SELECT * FROM events ORDER BY time DESC LIMIT {int(n_events)}"
        )
        return [dict(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: json.loads(value) if key in ("traits", "properties", "context", "allowed_origins") else value
        for key, value in row.items()
        if value is not None or key not in ("traits", "properties", "context", "allowed_origins")
    }


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def copy_into(url: str, target: str, n_events: int) -> dict[str, int]:
    """Every table's rows (events: the newest ``n_events``) into the migrated ``target`` database,
    through Trackway's own table definitions (so each database stores them its own way)."""
    engine = create_async_engine(target)
    counts: dict[str, int] = {}
    try:
        async with engine.begin() as db:
            for name, table, sql in TABLES:
                rows = await _rows(url, n_events, sql)
                if name == "sources":
                    await db.execute(table.delete())
                for chunk in _chunks(rows):
                    await db.execute(insert(table), [_decoded(row) for row in chunk])
                counts[name] = len(rows)
        # Statistics for the planner, as a live database has them (autovacuum, or SQLite's
        # ANALYZE run by its operator): a bulk-filled database without them plans blind.
        async with engine.begin() as db:
            await db.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pg-url", default=harness.DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    scale_url = harness.pg_url(args.pg_url, SCALE_DATABASE)
    answers: dict[str, list[queries.QueryResult]] = {}
    with tempfile.TemporaryDirectory(prefix="trackway-sqlite-queries-") as tmp:
        sqlite_file = Path(tmp) / "trackway.db"
        targets = {
            "sqlite": f"sqlite+aiosqlite:///{sqlite_file}",
            "postgresql": harness.pg_url(args.pg_url, COPY_DATABASE, "postgresql+asyncpg"),
        }
        asyncio.run(harness.pg_recreate(args.pg_url, COPY_DATABASE))
        for name, async_url in targets.items():
            token = secrets.token_urlsafe(24)
            env = harness.trackway_env(async_url, token)
            harness.create_source(env, "tracardi")  # migrates the empty database
            started = time.monotonic()
            counts = asyncio.run(copy_into(scale_url, async_url, args.events))
            log(f"== {name}: copied {counts} in {time.monotonic() - started:.0f} s")
            port = harness.free_port()
            with harness.running_server(
                harness.trackway_command(port, 1), env, port, "/readyz", Path(tmp) / f"{name}.log"
            ) as server:
                answers[name] = queries.run(
                    server.base, token, reps=args.reps, today=datetime.now(UTC).date()
                )
            for line in queries.summary_lines(answers[name]):
                log(f"  {line}")
    problems = [
        f"{a.name}: SQLite answered {a.answer!r}, PostgreSQL {b.answer!r}"
        for a, b in zip(answers["sqlite"], answers["postgresql"], strict=True)
        if a.answer != b.answer or a.errors or b.errors
    ]
    print(f"\nSQLite, {args.events:,} events, one question at a time:")
    for line in queries.summary_lines(answers["sqlite"]):
        print(f"  {line}")
    print("same answers as PostgreSQL on the same rows:" + (" yes" if not problems else ""))
    for problem in problems:
        print(f"  DIFFERENT: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
