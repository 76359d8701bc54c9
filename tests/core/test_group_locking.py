"""Groups that share profiles and sessions queue behind each other on PostgreSQL, never deadlock.

The write path must take its row locks in id order whatever plan PostgreSQL chooses. With
index and bitmap scans switched off, an ``UPDATE ... WHERE id = ANY(...)`` locks in heap
order, which moves as rows are updated; groups then deadlocked (seen in the benchmark, on
tables without statistics). Here every connection plans sequential scans, and several
groups over the same people run at once, again and again, with no retry to hide a deadlock.

That race needs three groups to interleave within microseconds, so the first test is a
smoke test that rarely meets it; the second checks the cause exactly: the plans sort the
rows by id before they lock them.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.helpers import plain_batch
from trackway.core.batch import IngestBatch
from trackway.core.group_commit import write_group
from trackway.db.uow import SqlUnitOfWork

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
PEOPLE = 24
GROUPS_AT_ONCE = 6
ROUNDS = 40


def visit(profile: str | None, session: str) -> IngestBatch:
    return plain_batch(SOURCE, session, profile)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_groups_over_the_same_people_never_deadlock(settings, uow, tracardi_source) -> None:
    async with uow.transaction() as db:
        first = await write_group(db, uow.dialect, [visit(None, f"s{i}") for i in range(PEOPLE)])
    people = [(result.profile_id, f"s{i}") for i, result in enumerate(first) if result is not None]
    assert len(people) == PEOPLE

    engine = create_async_engine(
        settings.database_url,
        pool_size=GROUPS_AT_ONCE,
        connect_args={
            "server_settings": {"enable_seqscan": "on", "enable_indexscan": "off", "enable_bitmapscan": "off"}
        },
    )
    seq_scans = SqlUnitOfWork(engine)
    rng = random.Random(7)

    async def group() -> None:
        chosen = rng.sample(people, PEOPLE * 2 // 3)
        batches = [visit(profile, session) for profile, session in chosen]
        async with seq_scans.transaction() as db:  # no retry: a deadlock fails the test
            results = await write_group(db, seq_scans.dialect, batches)
        assert None not in results

    try:
        for _ in range(ROUNDS):
            await asyncio.gather(*(group() for _ in range(GROUPS_AT_ONCE)))
    finally:
        await engine.dispose()


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _locks_in_id_order(plan: dict) -> bool:
    """Every ``LockRows`` node's input is sorted by ``id``: rows are locked as they leave the sort."""
    locks = [node for node in _nodes(plan) if node["Node Type"] == "LockRows"]
    for node in locks:
        (child,) = node["Plans"]
        if child["Node Type"] != "Sort" or not any(key.endswith("id") for key in child["Sort Key"]):
            return False
    return bool(locks)


def _locked_tables(lock_rows: dict) -> list[str]:
    return sorted({node["Relation Name"] for node in _nodes(lock_rows) if "Relation Name" in node})


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_lock_steps_lock_in_id_order_even_on_sequential_scans(uow, tracardi_source) -> None:
    """The exact check behind the test above: the plan sorts before it locks."""
    from trackway.db import group_pg

    load = (
        group_pg._LOAD.element.text.replace(":profiles", "$1")
        .replace(":sessions", "$2")
        .replace(":traits", "$3")
    )
    no_events: list[list[str]] = [[] for _ in range(10)]
    async with uow.engine.connect() as db:
        conn = (await db.get_raw_connection()).driver_connection
        await conn.execute("SET enable_seqscan = on; SET enable_indexscan = off; SET enable_bitmapscan = off")
        try:
            (plan,) = await conn.fetchval("EXPLAIN (FORMAT JSON) " + load, ["a", "b"], ["c"], False)
            assert _locks_in_id_order(plan["Plan"]), plan
            (plan,) = await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + group_pg._INSERT_EVENTS,
                *no_events,
                ["s1", "s2"],
                [datetime.now(UTC)] * 2,
                ["p1", "p2"],
                [0, 1],
                [datetime.now(UTC)] * 2,
                [],  # the events' bot flags
            )
            assert _locks_in_id_order(plan["Plan"]), plan
            kinds = [_locked_tables(node) for node in _nodes(plan["Plan"]) if node["Node Type"] == "LockRows"]
            assert sorted(kinds) == [["profiles"], ["sessions"]], kinds
        finally:
            await conn.execute("RESET enable_seqscan; RESET enable_indexscan; RESET enable_bitmapscan")
