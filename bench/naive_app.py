"""The naive writer: one PostgreSQL transaction per request, committed before the answer.

``POST /track`` validates the Tracardi payload like ``ceiling_app.py`` does, then, in one
transaction on a pooled asyncpg connection, upserts the profile and inserts the payload's events
into its own tables (``naive_profiles``, ``naive_events``, created at start-up if missing), and
answers 200 in Trackway's response shape only after the commit. It is what a reasonable first
implementation would do: no identity rules, sessions or deduplication, just the durable write. A
request costs four round trips (BEGIN, the upsert, the pipelined event inserts, COMMIT) and one
commit, i.e. one WAL flush. Trackway's req/s over this app's is the gain (or loss) of Trackway's
write path against the obvious one.

    BENCH_NAIVE_DSN=postgresql://postgres@127.0.0.1:5432/trackway_bench \\
    uvicorn --app-dir bench naive_app:app --host 127.0.0.1 --port 8002 --workers 1 \\
        --no-access-log --log-level warning
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import orjson
from ceiling_app import TrackerPayload, json_response, read_payload
from fastapi import FastAPI, Request
from fastapi.responses import Response

DSN = os.environ.get("BENCH_NAIVE_DSN", "postgresql://postgres@127.0.0.1:5432/trackway_bench")
#: Connections in the pool: Trackway's default ``TRACKWAY_DB_POOL_SIZE``.
POOL_SIZE = int(os.environ.get("BENCH_NAIVE_POOL_SIZE", "10"))

SCHEMA = """
CREATE TABLE IF NOT EXISTS naive_profiles (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    last_session text,
    event_count integer NOT NULL
);
CREATE TABLE IF NOT EXISTS naive_events (
    id text PRIMARY KEY,
    source_id text NOT NULL,
    profile_id text NOT NULL,
    session_key text,
    client_event_id text,
    type text NOT NULL,
    time timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    properties jsonb NOT NULL,
    context jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS naive_events_profile_time ON naive_events (profile_id, time);
"""

UPSERT_PROFILE = """
INSERT INTO naive_profiles AS p (id, created_at, last_seen_at, last_session, event_count)
VALUES ($1, $2, $2, $3, $4)
ON CONFLICT (id) DO UPDATE
SET last_seen_at = excluded.last_seen_at,
    last_session = excluded.last_session,
    event_count = p.event_count + excluded.event_count
"""

INSERT_EVENT = """
INSERT INTO naive_events
    (id, source_id, profile_id, session_key, client_event_id, type, time, received_at, properties, context)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)
"""


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(DSN, min_size=POOL_SIZE, max_size=POOL_SIZE)
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


app = FastAPI(title="bench naive writer", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


async def store(pool: asyncpg.Pool, payload: TrackerPayload, profile_id: str) -> list[str]:
    """The payload's events and its profile, in one transaction; their new ids once committed."""
    now = datetime.now(UTC)
    session_key = payload.session.id if payload.session else None
    context = _json(payload.context)
    rows = []
    for event in payload.events:
        event_time = event.time or now
        if event_time.tzinfo is None:
            event_time = event_time.replace(tzinfo=UTC)
        rows.append(
            (
                str(uuid.uuid4()),
                payload.source.id,
                profile_id,
                session_key,
                event.id,
                event.type,
                event_time,
                now,
                _json(event.properties),
                _json({**payload.context, **event.context}) if event.context else context,
            )
        )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(UPSERT_PROFILE, profile_id, now, session_key, len(rows))
        await conn.executemany(INSERT_EVENT, rows)
    return [row[0] for row in rows]


@app.post("/track")
async def track(request: Request) -> Response:
    payload = await read_payload(request)
    if isinstance(payload, Response):
        return payload
    profile_id = payload.profile.id if payload.profile and payload.profile.id else str(uuid.uuid4())
    event_ids = await store(request.app.state.pool, payload, profile_id)
    session_id = payload.session.id if payload.session else None
    return json_response(
        {
            "profile": {"id": profile_id},
            "session": {"id": session_id} if session_id else None,
            "events": event_ids,
            "duplicates": [],
        }
    )
