"""Cart outcomes with two real ``trackway serve`` processes on one PostgreSQL, both running the
outcome job every 0.2 s, and both restarted (one killed) while carts fall due: every cart
lifecycle ends in exactly one outcome event.

Everything is bounded: each wait polls the database for at most ``WAIT`` seconds, every
server is stopped in a ``finally``, and they listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import run_sync
from tests.faults.harness import BIN, Server, scratch_pg_database, server_env
from trackway.db.models import carts, events

pytestmark = pytest.mark.e2e

SID = "e2e-shop"
WAIT = 30.0
CART = {"totalprice": 3.0, "products": [{"name": "Tea", "price": 1.5, "count": 2}]}
JOB = {"TRACKWAY_CART_OUTCOMES_INTERVAL": "0.2", "TRACKWAY_DB_POOL_SIZE": "4"}


@pytest.fixture
def pg_database() -> Iterator[str]:
    with scratch_pg_database("trackway_carts", "the two-server cart test") as url:
        yield url


def read(url: str, fn: Any) -> Any:
    """Run a read against the database, from this synchronous test."""

    async def go() -> Any:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as db:
                return await fn(db)
        finally:
            await engine.dispose()

    return run_sync(go())


def outcomes(url: str) -> list[dict[str, Any]]:
    async def fn(db: Any) -> list[dict[str, Any]]:
        stmt = select(events.c.profile_id, events.c.type, events.c.properties, events.c.context).where(
            events.c.type.like("cart-%")
        )
        return [dict(row._mapping) for row in await db.execute(stmt)]

    result: list[dict[str, Any]] = read(url, fn)
    return result


def due_carts(url: str) -> int:
    async def fn(db: Any) -> int:
        stmt = select(carts.c.profile_id).where(carts.c.outcome_due_at.is_not(None))
        return len((await db.execute(stmt)).all())

    result: int = read(url, fn)
    return result


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"not within {WAIT} s: {what}")


def call(server: Server, action: str, person: str, data: Any = None) -> str:
    params = {"sid": SID, "id": person, "action": action}
    if data is not None:
        params["data"] = json.dumps(data)
    response = httpx.get(f"{server.base}/track", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["id"])


def start(url: str, log: Path) -> Server:
    server = Server(url, log, **JOB)
    server.wait_ready()
    return server


def test_two_servers_and_restarts_end_each_lifecycle_once(pg_database: str, tmp_path: Path) -> None:
    url = pg_database
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracktor", "--name", "shop", "--id", SID,
         "--cart-abandon-after", "1"],
        env=server_env(url), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    servers: list[Server] = []
    try:
        servers += [start(url, tmp_path / "a.log"), start(url, tmp_path / "b.log")]
        # Round 1, both servers up: 30 carts, a third canceled, a third bought, a third left.
        people = {f"p{n}": "" for n in range(30)}
        for n, person in enumerate(people):
            people[person] = call(servers[n % 2], "setCart", person, CART)
            # At once, on the other server (well within the second a cart takes to be abandoned).
            if n % 3 == 0:
                call(servers[(n + 1) % 2], "cancelCart", person)
            elif n % 3 == 1:
                call(servers[(n + 1) % 2], "purchaseCart", person)
        wait_for(lambda: len(outcomes(url)) >= 30 and due_carts(url) == 0, "30 outcomes")

        # Round 2: carts set, then both servers go away before they fall due (one killed, one
        # stopped); the due work waits in the database for the servers that come back. Three
        # seconds leave time to send them all first (the change applies from the next cart change).
        subprocess.run(
            [str(BIN / "trackway"), "sources", "update", SID, "--cart-abandon-after", "3"],
            env=server_env(url), capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        sent = time.monotonic()
        later = {f"q{n}": call(servers[n % 2], "setCart", f"q{n}", CART) for n in range(10)}
        # The abandoned ones of round 1 come back: a new lifecycle each.
        returning = [person for n, person in enumerate(people) if n % 3 == 2]
        for n, person in enumerate(returning):
            call(servers[n % 2], "setCart", person, CART)
        servers[0].kill()
        servers[1].stop()
        left = due_carts(url)
        assert left > 0, "every cart fell due before the servers went away: a slower machine than expected"
        time.sleep(max(0.0, sent + 3.5 - time.monotonic()))  # all due now, and nobody runs the job
        assert due_carts(url) == left
        servers += [start(url, tmp_path / "c.log"), start(url, tmp_path / "d.log")]
        wait_for(lambda: due_carts(url) == 0, "the carts due during the restart abandoned")
        time.sleep(1.0)  # a few more passes of both: nothing more may happen
        found = outcomes(url)
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        log = server.log_path.read_text(errors="replace")
        assert "cart outcomes pass failed" not in log, log[-4000:]

    assert all(o["context"] == {"generated": True, "generator": "cart-outcomes"} for o in found)
    by_lifecycle = Counter(o["properties"]["lifecycle_id"] for o in found)
    assert set(by_lifecycle.values()) == {1}, "a lifecycle ended twice"
    by_profile: dict[str, list[str]] = {}
    for o in found:
        by_profile.setdefault(o["profile_id"], []).append(o["type"])
    for n, person in enumerate(people):
        expected = [["cart-canceled"], ["cart-purchased"], ["cart-abandoned", "cart-abandoned"]][n % 3]
        assert sorted(by_profile[people[person]]) == expected, person
    for person, profile_id in later.items():
        assert by_profile[profile_id] == ["cart-abandoned"], person
    assert len(found) == 10 + 10 + 20 + 10
