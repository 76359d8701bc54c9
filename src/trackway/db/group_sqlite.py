"""The write path's hot statements on SQLite, sent through aiosqlite directly.

Through SQLAlchemy each row's values went through its type processing in Python (time
zones, the text form of a timestamp, JSON) and each statement through its compiler and
executemany emulation; on SQLite, where the database itself runs in this process, that
was most of a group's write. Here the rows are turned into SQLite's values once and sent
as a few plain statements on the aiosqlite connection under SQLAlchemy's, inside the
transaction SQLAlchemy began (``BEGIN IMMEDIATE``, ``db/engine.py``).

Values are stored exactly as SQLAlchemy stores them, so both read them alike: timestamps
as naive UTC text in SQLAlchemy's SQLite format (``2026-12-01 08:00:00.000000``, which
sorts and compares as text), JSON as text, booleans as 0/1. SQLite has one writer and no
row locks: the order of the statements is all that matters.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from trackway import jsonutil
from trackway.db.group_store import GroupStoreBase, chunks
from trackway.db.rows import EventColumns, NewProfile, NewSession, ProfileRow, Seen

#: SQLite allows 32,766 bound values a statement; events have eleven columns, sessions eight.
_EVENTS_PER_STATEMENT = 3000
_SESSIONS_PER_STATEMENT = 4000
_KEYS_PER_STATEMENT = 20000


def sqlite_time(value: datetime) -> str:
    """A UTC timestamp as SQLAlchemy's SQLite DATETIME stores it (naive UTC text)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@functools.lru_cache(maxsize=64)
def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


_INSERT_EVENTS = (
    "INSERT INTO events (id, source_id, profile_id, session_id, type, time, received_at, "
    "properties, context, dedup_key, bot) VALUES {values} "
    "ON CONFLICT (source_id, dedup_key) DO NOTHING RETURNING id",
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
)
_INSERT_SESSIONS = (
    "INSERT INTO sessions (id, source_id, client_key, visit_key, profile_id, started_at, "
    "last_event_at, event_count, context) VALUES {values} "
    "ON CONFLICT (source_id, client_key) DO NOTHING RETURNING id",
    "(?, ?, ?, ?, ?, ?, ?, 0, ?)",
)


@functools.lru_cache(maxsize=512)
def _multi_row(statement: tuple[str, str], rows: int) -> str:
    """``statement`` with ``rows`` copies of its row of placeholders (cached: the same few counts recur)."""
    text, row = statement
    return text.format(values=", ".join([row] * rows))


_INSERT_PROFILE = (
    "INSERT INTO profiles (id, traits, anonymous, visits, created_at, updated_at, last_seen_at, "
    "protected) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_TOUCH_SESSION = (
    "UPDATE sessions SET last_event_at = max(last_event_at, ?), event_count = event_count + ? WHERE id = ?"
)
_SEE_PROFILE = "UPDATE profiles SET last_seen_at = max(last_seen_at, ?), visits = visits + ? WHERE id = ?"


def _from_sqlite_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteGroupStore(GroupStoreBase):
    """``db.group_store.GroupStore`` on SQLite (one writer: the transaction holds the lock)."""

    async def load_profiles_and_sessions(
        self, profile_ids: list[str], session_ids: list[str], *, traits: bool = True
    ) -> tuple[dict[str, ProfileRow], dict[str, str]]:
        conn = await self._driver()
        found: dict[str, ProfileRow] = {}
        owners: dict[str, str] = {}
        for ids in chunks(profile_ids, _KEYS_PER_STATEMENT):
            sql = (
                "SELECT id, merged_into, traits, anonymous, created_at, protected FROM profiles "
                f"WHERE id IN ({_placeholders(len(ids))})"
            )
            for (
                pid,
                merged_into,
                stored_traits,
                anonymous,
                created_at,
                protected,
            ) in await conn.execute_fetchall(sql, ids):
                found[pid] = ProfileRow(
                    pid,
                    merged_into,
                    jsonutil.loads(stored_traits) if traits else None,
                    bool(anonymous),
                    _from_sqlite_time(created_at),
                    bool(protected),
                )
        for ids in chunks(session_ids, _KEYS_PER_STATEMENT):
            sql = f"SELECT id, profile_id FROM sessions WHERE id IN ({_placeholders(len(ids))})"
            for sid, owner in await conn.execute_fetchall(sql, ids):
                owners[sid] = owner
        return found, owners

    async def open_sessions(self, new: list[NewSession], fresh: list[NewProfile]) -> set[str]:
        conn = await self._driver()
        if fresh:
            rows = [
                (
                    p.id,
                    jsonutil.dumps_str(p.traits),
                    int(p.anonymous),
                    p.visits,
                    sqlite_time(p.created_at),
                    sqlite_time(p.updated_at),
                    sqlite_time(p.last_seen_at),
                    int(p.protected),
                )
                for p in fresh
            ]
            await conn.executemany(_INSERT_PROFILE, rows)
        created: set[str] = set()
        for start in range(0, len(new), _SESSIONS_PER_STATEMENT):
            chunk = new[start : start + _SESSIONS_PER_STATEMENT]
            params: list[Any] = []
            for s in chunk:
                started = sqlite_time(s.started_at)
                context = jsonutil.dumps_str(s.context)
                params.extend(
                    (s.id, s.source_id, s.client_key, s.visit_key, s.profile_id, started, started, context)
                )
            found = await conn.execute_fetchall(_multi_row(_INSERT_SESSIONS, len(chunk)), params)
            created.update(row[0] for row in found)
        return created

    async def insert_events(
        self, rows: EventColumns, sessions: dict[str, datetime], seen: dict[str, Seen]
    ) -> set[str]:
        conn = await self._driver()
        inserted: set[str] = set()
        dumps = jsonutil.dumps_str
        for start in range(0, len(rows), _EVENTS_PER_STATEMENT):
            end = min(start + _EVENTS_PER_STATEMENT, len(rows))
            params: list[Any] = []
            for i in range(start, end):
                params.extend(
                    (
                        rows.id[i],
                        rows.source_id[i],
                        rows.profile_id[i],
                        rows.session_id[i],
                        rows.type[i],
                        sqlite_time(rows.time[i]),
                        sqlite_time(rows.received_at[i]),
                        dumps(rows.properties[i]),
                        dumps(rows.context[i]),
                        rows.dedup_key[i],
                        rows.bot[i],
                    )
                )
            found = await conn.execute_fetchall(_multi_row(_INSERT_EVENTS, end - start), params)
            inserted.update(row[0] for row in found)
        if sessions:
            counts = Counter(
                session_id
                for event_id, session_id in zip(rows.id, rows.session_id, strict=True)
                if session_id is not None and event_id in inserted
            )
            await conn.executemany(
                _TOUCH_SESSION, [(sqlite_time(at), counts[sid], sid) for sid, at in sessions.items()]
            )
        if seen:
            await conn.executemany(
                _SEE_PROFILE, [(sqlite_time(e.at), e.visits, pid) for pid, e in seen.items()]
            )
        return inserted
