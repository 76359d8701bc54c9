"""End to end: ``trackway serve`` as a real process, spoken to over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import fixture

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    env = {
        **os.environ,
        "TRACKWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}",
        "TRACKWAY_ADMIN_TOKEN": "e2e-token",
        "TRACKWAY_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [str(BIN / "trackway"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"trackway serve exited with {process.returncode}:\n{output}")
            time.sleep(0.1)
        else:
            pytest.fail("trackway serve did not become ready within 30 s")
        yield base, env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
