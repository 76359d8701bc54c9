"""End to end: ``trackway serve`` as a real process, spoken to over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import harness
from tests.helpers import fixture

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}"
    process = harness.Server(database_url, tmp_path / "server.log", TRACKWAY_ADMIN_TOKEN="e2e-token")
    try:
        process.wait_ready()
        yield process.base, process.env
    finally:
        process.stop()


def test_newcomer_flow_over_http(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    # Create a source with the CLI against the same database, as the README says.
    payload = fixture("tracardi_minimal.json")
    created = subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracardi", "--name", "web",
         "--id", payload["source"]["id"]],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(created.stdout)["id"] == payload["source"]["id"]

    response = httpx.post(f"{base}/track", json=payload, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    admin = {"Authorization": "Bearer e2e-token"}
    profile = httpx.get(f"{base}/api/profiles/{body['profile']['id']}", headers=admin, timeout=10).json()
    assert profile["visits"] == 1
    events = httpx.get(f"{base}/api/profiles/{profile['id']}/events", headers=admin, timeout=10).json()
    assert [e["type"] for e in events["items"]] == ["page-view", "consent-granted", "product-in-basket"]
    session = httpx.get(f"{base}/api/sessions/{body['session']['id']}", headers=admin, timeout=10).json()
    assert session["event_count"] == 3

    invalid = httpx.post(f"{base}/track", json={**payload, "source": {"id": "nope"}}, timeout=10)
    assert invalid.status_code == 401
    assert invalid.json() == {"detail": "Access denied. Invalid source."}
