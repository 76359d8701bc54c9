"""Slow clients (slowloris) against a real ``trackway serve`` under ``ulimit -n 256``.

200 connections that send half their headers, or their headers and half a body, then stall,
used to hold every file descriptor: every new request failed. Now the header and body
deadlines close them (408, JSON), and a well-behaved client gets its 200 within a couple
of seconds: at once while descriptors remain, else once the deadline has freed them (the
connection limit answers 503 meanwhile, never a refused connection).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import harness
from tests.helpers import tracker_payload

pytestmark = pytest.mark.e2e

DEADLINE = 2.0
STALLED = 200


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}"
    source_id = harness.create_source(database_url)
    server = harness.Server(
        database_url,
        tmp_path / "server.log",
        ulimit_files=256,
        TRACKWAY_HEADER_TIMEOUT_SECONDS=str(DEADLINE),
        TRACKWAY_BODY_TIMEOUT_SECONDS=str(DEADLINE),
    )
    try:
        server.wait_ready()
        yield server.base, source_id
    finally:
        server.stop()


async def stall(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def test_stalled_uploads_do_not_lock_out_other_clients(slow_server: tuple[str, str]) -> None:
    base, source_id = slow_server
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps(tracker_payload(source_id, session="good")).encode()
    half_headers = b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Type: appli"
    half_body = (
        b"POST /track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    stalled = await asyncio.gather(
        *(stall(port, half_headers if i % 2 else half_body) for i in range(STALLED))
    )
    opened = time.monotonic()

    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(40):  # bounded: 40 tries, 0.1 s apart, within 2 deadlines
            try:
                response = await client.post(f"{base}/track", json=tracker_payload(source_id, session="good"))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    break
            except httpx.TransportError as exc:
                pytest.fail(f"a well-behaved client could not connect: {exc!r}")
            await asyncio.sleep(0.1)
    answered = time.monotonic() - opened
    assert statuses and statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert answered < DEADLINE + 2.5, answered

    # Every stalled connection is answered 408 and closed once its deadline passed.
    async def closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(), timeout=DEADLINE + 4)
        finally:
            writer.close()

    answers = await asyncio.gather(*(closed(r, w) for r, w in stalled))
    assert time.monotonic() - opened < DEADLINE + 6
    seen: dict[bytes, int] = {}
    for answer in answers:
        head, _, payload = answer.partition(b"\r\n\r\n")
        status = head[9:12]
        seen[status] = seen.get(status, 0) + 1
        assert b"application/json" in head.lower(), answer[:300]
        detail = json.loads(payload)["detail"]
        if status == b"408":  # a deadline closed it
            assert "did not arrive" in detail
        else:  # over the connection limit (fitted to ulimit -n 256): refused at once
            assert status == b"503", answer[:300]
            assert "Too many open connections" in detail
    assert seen.get(b"408", 0) >= STALLED // 2, seen
