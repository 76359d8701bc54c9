"""The write path's hot statements on PostgreSQL, sent through asyncpg directly.

Each step is one statement of fixed text (rows travel as one array per column through
``unnest``), so asyncpg prepares it once per connection whatever the group's size: a group of
returning visitors costs two round trips plus ``BEGIN`` and ``COMMIT``. The statements run on the
asyncpg connection under SQLAlchemy's, inside the transaction SQLAlchemy began: the first
one goes through SQLAlchemy, which sends the ``BEGIN``; the rest skip its per-statement
cost (about 0.1 ms of CPU each, measured), which the hot path pays for every group.

Locks are taken in id order, whatever plan PostgreSQL picks: profiles and sessions by
``SELECT ... ORDER BY id FOR ...`` (the lock is taken above the sort) before they are
updated, new sessions inserted in sorted order. The group's profiles are locked by its first
statement; the sessions it touches by the last one before ``COMMIT``. Two groups sharing rows
therefore queue behind each other instead of deadlocking. (An ``UPDATE ... WHERE id =
ANY(...)`` alone locks in the order of its scan: a sequential scan on a table without
statistics locked in heap order, and two groups deadlocked.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, text

from trackway import jsonutil
from trackway.db.base import JsonColumn, UTCDateTime
from trackway.db.group_store import GroupStoreBase
from trackway.db.rows import EventColumns, NewProfile, NewSession, ProfileRow, Seen

# The group's profiles, locked in id order (the lock is taken above the sort): no merge moves
# them and no other group changes their traits, carts or counters until this one commits.
_LOAD = text(
    """
    WITH locked AS (
        SELECT id, merged_into, traits, anonymous, created_at, protected FROM profiles
        WHERE id = ANY(CAST(:profiles AS varchar[]))
        ORDER BY id FOR NO KEY UPDATE
    )
    SELECT true AS profile, id, merged_into AS owner,
           CASE WHEN CAST(:traits AS boolean) THEN traits END AS traits, anonymous, created_at, protected
    FROM locked
    UNION ALL
    SELECT false, id, profile_id, NULL, NULL, NULL, NULL FROM sessions
    WHERE id = ANY(CAST(:sessions AS varchar[]))
    """
).columns(
    profile=Boolean,
    id=String,
    owner=String,
    traits=JsonColumn,
    anonymous=Boolean,
    created_at=UTCDateTime,
    protected=Boolean,
)

# The new profiles are inserted by the same statement as the new sessions (whose foreign key is
# checked at its end). A session opened meanwhile by another transaction is not inserted: the
# group then starts again (``core.group_write.LostRace``).
_OPEN_SESSIONS = """
    WITH fresh AS (
        INSERT INTO profiles (id, traits, anonymous, visits, created_at, updated_at, last_seen_at,
                              protected)
        SELECT id, traits::jsonb, anonymous, visits, created_at, updated_at, last_seen_at, protected
        FROM unnest($8::varchar[], $9::text[], $10::bool[], $11::int[], $12::timestamptz[],
                    $13::timestamptz[], $14::timestamptz[], $15::bool[])
             AS p(id, traits, anonymous, visits, created_at, updated_at, last_seen_at, protected)
    )
    INSERT INTO sessions (id, source_id, client_key, visit_key, profile_id, started_at,
                          last_event_at, event_count, context)
    SELECT id, source_id, client_key, visit_key, profile_id, started_at, started_at, 0, context::jsonb
    FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
                $6::timestamptz[], $7::text[])
         AS s(id, source_id, client_key, visit_key, profile_id, started_at, context)
    ORDER BY id
    ON CONFLICT (source_id, client_key) DO NOTHING
    RETURNING id
"""

_INSERT_EVENTS = """
    WITH inserted AS (
        INSERT INTO events (id, source_id, profile_id, session_id, type, time, received_at,
                            properties, context, dedup_key, bot)
        SELECT id, source_id, profile_id, session_id, type, time, received_at,
               properties::jsonb, context::jsonb, dedup_key, bot
        FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
                    $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::varchar[],
                    $16::bool[])
             AS e(id, source_id, profile_id, session_id, type, time, received_at,
                  properties, context, dedup_key, bot)
        ON CONFLICT (source_id, dedup_key) DO NOTHING
        RETURNING id, session_id
    ), counts AS (
        SELECT session_id, count(*)::int AS n FROM inserted WHERE session_id IS NOT NULL
        GROUP BY session_id
    ), touched AS (
        UPDATE sessions
        SET last_event_at = GREATEST(sessions.last_event_at, t.at),
            event_count = sessions.event_count
                + COALESCE((SELECT n FROM counts WHERE counts.session_id = sessions.id), 0)
        FROM unnest($11::varchar[], $12::timestamptz[]) AS t(id, at)
        WHERE sessions.id = t.id AND sessions.id IN (
            SELECT id FROM sessions WHERE id = ANY($11::varchar[]) ORDER BY id FOR NO KEY UPDATE
        )
    ), seen AS (
        UPDATE profiles
        SET last_seen_at = GREATEST(profiles.last_seen_at, v.at),
            visits = profiles.visits + v.n
        FROM unnest($13::varchar[], $14::int[], $15::timestamptz[]) AS v(id, n, at)
        WHERE profiles.id = v.id AND profiles.id IN (
            SELECT id FROM profiles WHERE id = ANY($13::varchar[]) ORDER BY id FOR NO KEY UPDATE
        )
    )
    SELECT id FROM inserted
"""


class PgGroupStore(GroupStoreBase):
    """``db.group_store.GroupStore`` on PostgreSQL. ``load_profiles_and_sessions`` comes first."""

    async def load_profiles_and_sessions(
        self, profile_ids: list[str], session_ids: list[str], *, traits: bool = True
    ) -> tuple[dict[str, ProfileRow], dict[str, str]]:
        # Through SQLAlchemy: it begins the transaction the raw statements then run in.
        params = {"profiles": profile_ids, "sessions": session_ids, "traits": traits}
        rows = await self._db.execute(_LOAD, params)
        found: dict[str, ProfileRow] = {}
        owners: dict[str, str] = {}
        for row in rows:
            if row.profile:
                found[row.id] = ProfileRow(
                    row.id, row.owner, row.traits, row.anonymous, row.created_at, row.protected
                )
            else:
                owners[row.id] = row.owner
        return found, owners

    async def open_sessions(self, new: list[NewSession], fresh: list[NewProfile]) -> set[str]:
        if not new and not fresh:
            return set()
        dumps = jsonutil.dumps_str
        rows = await (await self._driver()).fetch(
            _OPEN_SESSIONS,
            [s.id for s in new],
            [s.source_id for s in new],
            [s.client_key for s in new],
            [s.visit_key for s in new],
            [s.profile_id for s in new],
            [s.started_at for s in new],
            [dumps(s.context) for s in new],
            [p.id for p in fresh],
            [dumps(p.traits) for p in fresh],
            [p.anonymous for p in fresh],
            [p.visits for p in fresh],
            [p.created_at for p in fresh],
            [p.updated_at for p in fresh],
            [p.last_seen_at for p in fresh],
            [p.protected for p in fresh],
        )
        return {row[0] for row in rows}

    async def insert_events(
        self, rows: EventColumns, sessions: dict[str, datetime], seen: dict[str, Seen]
    ) -> set[str]:
        if not len(rows) and not sessions and not seen:
            return set()
        dumps = jsonutil.dumps_str
        found = await (await self._driver()).fetch(
            _INSERT_EVENTS,
            rows.id,
            rows.source_id,
            rows.profile_id,
            rows.session_id,
            rows.type,
            rows.time,
            rows.received_at,
            [dumps(value) for value in rows.properties],
            [dumps(value) for value in rows.context],
            rows.dedup_key,
            list(sessions),
            list(sessions.values()),
            list(seen),
            [entry.visits for entry in seen.values()],
            [entry.at for entry in seen.values()],
            rows.bot,
        )
        return {row[0] for row in found}
