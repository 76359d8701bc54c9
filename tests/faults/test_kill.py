"""kill -9 under load: every acknowledged event survives, and retries store nothing twice.

A 2xx is sent only after the commit (design.md, "The ingest core", step 5), and a commit
is durable (PostgreSQL's WAL, SQLite's WAL with ``synchronous=FULL``). So a server killed
without warning may leave requests unanswered, but never an acknowledged event unstored,
and clients retrying with the same event ids get duplicates reported, not stored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.harness import (
    Load,
    Server,
    assert_acknowledged_are_stored,
    create_source,
    resend,
    stored_events,
    summary,
    under_load,
)

pytestmark = pytest.mark.faults

#: How many acknowledged requests are sent again as well (they must all come back as duplicates).
RESENT_ACKNOWLEDGED = 50


async def _load_then_kill(server: Server, source_id: str) -> tuple[Load, float]:
    load = Load(server.base, source_id, loops=8, seconds=20)

    async def kill() -> float:
        await under_load(load)
        load.faulted.set()
        os.kill(server.pid, signal.SIGKILL)
        return time.monotonic()

    async with asyncio.timeout(60):
        killed_at, _ = await asyncio.gather(kill(), load.run())
    return load, killed_at


def test_kill_9_loses_nothing_acknowledged_and_retries_store_nothing_twice(
    fault_db: str, tmp_path: Path
) -> None:
    source_id = create_source(fault_db)
    server = Server(fault_db, tmp_path / "server.log")
    try:
        server.wait_ready()
        load, killed_at = asyncio.run(_load_then_kill(server, source_id))
        server.kill()
    finally:
        server.stop()
    outcomes = load.outcomes
    acknowledged = [o for o in outcomes if o.acknowledged]
    unanswered = [o for o in outcomes if not o.acknowledged]
    assert {o.status for o in outcomes} <= {200, None}, summary(outcomes)
    assert not [o for o in unanswered if o.ended < killed_at], "no answer before the kill"
    assert len(acknowledged) >= 20, f"too little load to mean anything: {summary(outcomes)}"

    restarted = Server(fault_db, tmp_path / "server.log")
    try:
        restarted.wait_ready()
        rows = asyncio.run(stored_events(fault_db, source_id))
        assert assert_acknowledged_are_stored(outcomes, rows) == len(acknowledged)

        # Clients retry what got no answer; some retry what did (a lost response).
        step = max(1, len(acknowledged) // RESENT_ACKNOWLEDGED)
        again = acknowledged[::step]
        answers = asyncio.run(resend(restarted.base, unanswered + again))
    finally:
        restarted.stop()

    assert [a.status for a in answers] == [200] * len(answers), summary(answers)
    first = {o.event_keys[0]: o for o in outcomes}
    for answer in answers:
        before = first[answer.event_keys[0]]
        if before.acknowledged:
            assert answer.body["events"] == []
            assert sorted(answer.body["duplicates"]) == sorted(before.body["events"])
        else:  # stored before the kill (answer lost) or not: either way, once
            assert len(answer.body["events"]) + len(answer.body["duplicates"]) == 3

    rows = asyncio.run(stored_events(fault_db, source_id))
    per_key = Counter(key for _, key in rows)
    assert [key for key, n in per_key.items() if n != 1] == []
    sent = {key for o in outcomes for key in o.event_keys}
    assert set(per_key) == sent
    assert len(rows) == len(sent) == 3 * len(outcomes)
