"""The quarantine with a real ``trackway serve`` process, on SQLite and on PostgreSQL: a request
rejected over real HTTP is kept without its credentials, replayed corrected through the admin
API, counted in ``/metrics``; a second server with a short ``TRACKWAY_REJECTIONS_DAYS`` has its
lifespan's retention job delete it.

Everything is bounded: each wait polls for at most ``WAIT`` seconds, every server is stopped in
a ``finally``, and they listen on 127.0.0.1 only.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.harness import ADMIN_TOKEN, BIN, Server, scratch_pg_database, server_env

pytestmark = pytest.mark.e2e

SOURCE = "e2e-quarantine"
WAIT = 30.0
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'quarantine.db'}"
        return
    with scratch_pg_database("trackway_quarantine", "the quarantine e2e test") as url:
        yield url


def listed(server: Server) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.base}/api/rejections", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_rejection_is_kept_replayed_and_expires(database: str, tmp_path: Path) -> None:
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracardi", "--name", "web",
         "--id", SOURCE],
        env=server_env(database), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    server = Server(database, tmp_path / "a.log")
    try:
        server.wait_ready()
        bad = {"source": {"id": SOURCE}, "session": {"id": "s-1"}, "events": [{"id": "e-1"}]}
        response = httpx.post(
            f"{server.base}/track",
            json=bad,
            headers={"Authorization": "Bearer leak-me", "Cookie": "sid=leak-me-too"},
            timeout=10,
        )
        assert response.status_code == 422
        (item,) = listed(server)
        detail = httpx.get(f"{server.base}/api/rejections/{item['id']}", headers=ADMIN, timeout=10).json()
        assert detail["response"] == response.json()
        assert "leak-me" not in str(detail)
        assert detail["request"]["client_ip"] == "127.0.0.1"

        fixed = {**bad, "events": [{"id": "e-1", "type": "page-view"}]}
        for _ in range(2):
            outcome = httpx.post(
                f"{server.base}/api/rejections/{item['id']}/replay",
                json={"body": fixed},
                headers=ADMIN,
                timeout=10,
            ).json()
            assert (outcome["state"], outcome["status"]) == ("replayed", 200)
        events = httpx.get(f"{server.base}/api/events", params={"source": SOURCE}, headers=ADMIN, timeout=10)
        assert len(events.json()["items"]) == 1
        scraped = httpx.get(f"{server.base}/metrics", timeout=10).text
        assert 'trackway_rejections_total{dialect="tracardi",outcome="kept"} 1.0' in scraped
        assert 'trackway_rejection_replays_total{outcome="accepted"} 1.0' in scraped
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text(errors="replace")

    # A restart with a retention of about a second: the lifespan's job deletes it.
    server = Server(
        database,
        tmp_path / "b.log",
        TRACKWAY_REJECTIONS_DAYS="0.00001",
        TRACKWAY_REJECTIONS_PURGE_INTERVAL="0.2",
    )
    try:
        server.wait_ready()
        deadline = time.monotonic() + WAIT
        while listed(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert listed(server) == []
    finally:
        server.stop()
    assert "retention pass failed" not in server.log_path.read_text(errors="replace")
