"""A database that cannot be reached: 503 with Retry-After and a JSON body, never a 2xx."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers import tracker_payload
from trackway.app import create_app
from trackway.settings import Settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
async def down_client(request, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/trackway.db"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/test"
    app = create_app(Settings(database_url=url, admin_token="t", source_cache_seconds=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_requests_during_an_outage_get_503(down_client) -> None:
    response = await down_client.post("/track", json=tracker_payload("any-source", session="s"))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "detail" in response.json()
    ready = await down_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"detail": "Database unreachable."}
    assert (await down_client.get("/healthz")).status_code == 200
