"""Erasure and retention with two real ``trackway serve`` processes on one PostgreSQL, each
running both jobs: erasures asked of either server are done once, while the erased people's
requests keep arriving at both (suppressed afterwards), and old events go; the others stay.

Everything is bounded: each wait polls for at most ``WAIT`` seconds, every server is stopped
in a ``finally``, and they listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.e2e.test_cart_outcomes import pg_database, read, wait_for  # noqa: F401 (a fixture)
from tests.faults.harness import ADMIN_TOKEN, BIN, Server, server_env
from trackway.db.models import erasures, events, identities, profiles

pytestmark = pytest.mark.e2e

SID = "e2e-privacy"
JOBS = {
    "TRACKWAY_ERASURE_INTERVAL": "0.2",
    "TRACKWAY_RETENTION_INTERVAL": "0.3",
    "TRACKWAY_DB_POOL_SIZE": "4",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def track(server: Server, person: str, *, days_ago: float = 0, phase: str = "") -> httpx.Response:
    params = {"sid": SID, "id": person, "action": "view", "data": json.dumps({"phase": phase})}
    if days_ago:
        params["ts"] = str(int(time.time() - days_ago * 86400))
    response = httpx.get(f"{server.base}/track", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response


def a_day_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


def scalar(url: str, statement: Any) -> Any:
    async def fn(db: Any) -> Any:
        return (await db.execute(statement)).scalar_one()

    return read(url, fn)


def test_two_servers_erase_suppress_and_retain(pg_database: str, tmp_path: Path) -> None:  # noqa: F811
    url = pg_database
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracktor", "--name", "app", "--id", SID],
        env=server_env(url), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    servers: list[Server] = []
    try:
        servers = [Server(url, tmp_path / "a.log", **JOBS), Server(url, tmp_path / "b.log", **JOBS)]
        for server in servers:
            server.wait_ready()
        people = [f"p{n}" for n in range(10)]
        for n, person in enumerate(people):
            for k in range(6):
                track(servers[(n + k) % 2], person, days_ago=3 if k == 0 else 0, phase="before")
        erased = people[:5]
        asked = []
        for n, person in enumerate(erased):
            response = httpx.post(
                f"{servers[n % 2].base}/api/erasures",
                json={"identity": f"person:{person}", "source": SID, "suppress": True},
                headers=ADMIN,
                timeout=10,
            )
            assert response.status_code == 202, response.text
            asked.append(response.json()["id"])
        # The erased people keep sending, to both servers, while the jobs run.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: track(servers[i % 2], erased[i % 5], phase="race"), range(60)))
        wait_for(
            lambda: scalar(url, select(func.count()).where(erasures.c.state != "done")) == 0,
            "every erasure done",
        )
        for i in range(10):
            track(servers[i % 2], erased[i % 5], phase="after")
        # Retention: a day, set through the API of one server; the other's job may do it.
        patched = httpx.patch(
            f"{servers[0].base}/api/sources/{SID}", json={"retention_days": 1}, headers=ADMIN, timeout=10
        )
        assert patched.status_code == 200 and patched.json()["retention_days"] == 1
        wait_for(
            lambda: (
                scalar(url, select(func.count()).select_from(events).where(events.c.time < a_day_ago())) == 0
            ),
            "events older than a day deleted",
        )
        done = [
            httpx.get(f"{servers[1].base}/api/erasures/{i}", headers=ADMIN, timeout=10).json() for i in asked
        ]
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        log = server.log_path.read_text(errors="replace")
        assert "pass failed" not in log, log[-4000:]
    assert {d["state"] for d in done} == {"done"}
    assert all(d["counts"]["profiles"] == 1 and d["counts"]["events"] >= 5 for d in done)
    # The five erased people: nothing at all (their requests after the erasure were suppressed).
    assert scalar(url, select(func.count()).select_from(profiles)) == 5
    assert scalar(url, select(func.count()).select_from(identities)) == 5
    kept = scalar(url, select(func.count()).select_from(events))
    assert kept == 5 * 5  # the others' recent events; their 3-day-old ones went by retention
