"""The bulk path's statements through SQLAlchemy Core, for SQLite.

SQLite has one writer and no row locks, so the order of the statements is all that
matters (on PostgreSQL the order of the row locks matters too: ``db/bulk_pg.py``). The
session counts that PostgreSQL computes in the event insert's statement are computed
here from the ids the insert returns.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.bulk import EventColumns, NewSession
from trackway.db.models import events, profiles, sessions
from trackway.db.sql import greatest, in_ids, insert_ignore


class CoreBulkStore:
    """``core.bulk.BulkStore`` over an SQLAlchemy connection."""

    def __init__(self, db: AsyncConnection) -> None:
        self._db = db
        self._dialect = db.dialect.name

    async def find_live_profiles_and_sessions(
        self, profile_ids: list[str], session_ids: list[str]
    ) -> tuple[set[str], set[str]]:
        live: set[str] = set()
        if profile_ids:
            rows = await self._db.execute(
                select(profiles.c.id).where(
                    in_ids(self._dialect, profiles.c.id, profile_ids), profiles.c.merged_into.is_(None)
                )
            )
            live = set(rows.scalars())
        existing: set[str] = set()
        if session_ids:
            rows = await self._db.execute(
                select(sessions.c.id).where(in_ids(self._dialect, sessions.c.id, session_ids))
            )
            existing = set(rows.scalars())
        return live, existing

    async def open_sessions(self, new: list[NewSession], fresh: dict[str, datetime]) -> set[str]:
        if fresh:
            await self._db.execute(
                insert(profiles),
                [
                    {
                        "id": profile_id,
                        "traits": {},
                        "anonymous": True,
                        "visits": 1,  # the visit it is made for (deleted if that is lost)
                        "created_at": when,
                        "updated_at": when,
                        "last_seen_at": when,
                    }
                    for profile_id, when in fresh.items()
                ],
            )
        stmt = insert_ignore(self._dialect, sessions, ["source_id", "client_key"]).returning(sessions.c.id)
        rows = [
            {
                "id": s.id,
                "source_id": s.source_id,
                "client_key": s.client_key,
                "visit_key": None,
                "profile_id": s.profile_id,
                "started_at": s.started_at,
                "last_event_at": s.started_at,
                "event_count": 0,
                "context": s.context,
            }
            for s in new
        ]
        return set((await self._db.execute(stmt, rows)).scalars())

    async def delete_profiles(self, ids: list[str]) -> None:
        await self._db.execute(delete(profiles).where(in_ids(self._dialect, profiles.c.id, ids)))

    async def insert_events(
        self, rows: EventColumns, sessions_touched: list[str], seen: dict[str, int], at: datetime
    ) -> set[str]:
        inserted: set[str] = set()
        if len(rows):
            stmt = insert_ignore(self._dialect, events, ["source_id", "dedup_key"]).returning(events.c.id)
            values = [
                {
                    "id": rows.id[i],
                    "source_id": rows.source_id[i],
                    "profile_id": rows.profile_id[i],
                    "session_id": rows.session_id[i],
                    "type": rows.type[i],
                    "time": rows.time[i],
                    "received_at": rows.received_at[i],
                    "properties": rows.properties[i],
                    "context": rows.context[i],
                    "dedup_key": rows.dedup_key[i],
                }
                for i in range(len(rows))
            ]
            inserted = set((await self._db.execute(stmt, values)).scalars())
        if sessions_touched:
            counts = Counter(
                session_id
                for event_id, session_id in zip(rows.id, rows.session_id, strict=True)
                if session_id is not None and event_id in inserted
            )
            await self._db.execute(
                update(sessions)
                .where(sessions.c.id == bindparam("sid"))
                .values(
                    last_event_at=greatest(
                        sessions.c.last_event_at, bindparam("at", type_=sessions.c.last_event_at.type)
                    ),
                    event_count=sessions.c.event_count + bindparam("n"),
                ),
                [{"sid": sid, "n": counts[sid], "at": at} for sid in sessions_touched],
            )
        if seen:
            await self._db.execute(
                update(profiles)
                .where(profiles.c.id == bindparam("pid"))
                .values(
                    last_seen_at=greatest(
                        profiles.c.last_seen_at, bindparam("at", type_=profiles.c.last_seen_at.type)
                    ),
                    visits=profiles.c.visits + bindparam("n"),
                ),
                [{"pid": pid, "n": n, "at": at} for pid, n in seen.items()],
            )
        return inserted

    async def stored_event_ids(self, source_id: str, keys: list[str]) -> dict[str, str]:
        rows = await self._db.execute(
            select(events.c.dedup_key, events.c.id).where(
                events.c.source_id == source_id, in_ids(self._dialect, events.c.dedup_key, keys)
            )
        )
        return {row.dedup_key: row.id for row in rows}
